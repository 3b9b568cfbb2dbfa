//! Shared helpers for the whole-system tests.
#![allow(dead_code)]

pub mod blackhole;
pub mod cluster;
pub mod etcd;
pub mod pki;
pub mod process;
pub mod redis_cluster;
pub mod relay;
pub mod stores;
pub mod wire;
