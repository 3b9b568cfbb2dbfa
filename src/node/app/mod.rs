//! The DSF application: the operations a node serves, grouped by prefix.

pub mod sys;
