//! The partition suite (issue 13): the cluster in network namespaces, faults injected
//! under a concurrent workload, every operation recorded and checked for per-key
//! linearizability. See TESTING.md, "Partitions".

#[path = "partitions/checker.rs"]
mod checker;
#[path = "partitions/lab.rs"]
mod lab;
#[path = "partitions/topology.rs"]
mod topology;
