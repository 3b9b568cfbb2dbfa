//! DSF — a distributed service framework: nodes that serve length-prefixed JSON
//! requests, backed by MySQL or embedded stores with a Redis (or Redis Cluster) or
//! in-process cache, and a balancer that registers nodes and routes clients to them.
//!
//! # Layout
//!
//! - [`protocol`]: frames, requests, responses, error codes, legacy v1 codes.
//! - [`runtime`]: one smol executor per thread, the blocking pool, listeners,
//!   the connection registry (`sharded-slab`), limits and shutdown.
//! - [`framework`]: the router, typed handlers, middleware — how an application
//!   plugs its operations in.
//! - [`node`]: the node library: [`node::Node::builder`] runs any service.
//! - [`app`]: the DSF business (users, sessions, blacklist, collector), one
//!   application built on the node library.
//! - [`store`]: the persistent store (MySQL or embedded SQLite) and its migrations.
//! - [`cache`]: the cache layer (Redis on the hash ring, a Redis Cluster, or in-process).
//! - [`auth`]: session tokens, where sessions live, password hashing.
//! - [`ring`]: the consistent-hash ring, shared by balancer selection and cache sharding.
//! - [`balancer`]: membership, node selection, directory and proxy.
//! - [`client`]: a pipelined client connection.
//! - [`bench`]: the load generator behind `dsf bench`.
//! - [`metrics`]: metric names and the Prometheus recorder (a leaf: imports nothing of the crate).
//! - [`admin`]: the admin HTTP listener (metrics, health, status page).
//! - [`config`]: the configuration pipeline (file → env → flags).
//! - [`tls`]: rustls settings from `[tls]`, reloaded on SIGHUP, and the TLS streams.

#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod balancer;
pub mod bench;
pub mod cache;
pub mod client;
pub mod config;
pub mod framework;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod ring;
pub mod runtime;
pub mod store;
pub mod tls;
