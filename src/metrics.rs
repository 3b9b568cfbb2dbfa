//! Metric names, their help text and the process-wide Prometheus recorder.
//!
//! Metrics are recorded through the `metrics` facade everywhere; this module installs
//! the Prometheus recorder once and renders it for `/metrics`. Names are constants so
//! the README's list and the code cannot drift apart, and [`describe`] gives each its
//! `# HELP` text right here, so that `promtool check metrics` is clean and the alert
//! rules and dashboard in `monitoring/` can rely on the names.
//!
//! Names follow Prometheus conventions: base units (`_seconds`, `_bytes`), `_total`
//! for counters, no unit on plain counts. The unit is given to the describe macros
//! too, but the exporter's unit suffixing stays off because the names carry it.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Requests answered, by `op` and `code` (`ok` or an error code).
pub const REQUESTS: &str = "dsf_requests_total";
/// Request latency in seconds, by `op`.
pub const REQUEST_SECONDS: &str = "dsf_request_duration_seconds";
/// Open connections, by `listener`.
pub const CONNECTIONS: &str = "dsf_connections_open";
/// Connections accepted, by `listener`.
pub const CONNECTIONS_ACCEPTED: &str = "dsf_connections_accepted_total";
/// Connections refused at the connection limit, by `listener`.
pub const CONNECTIONS_REFUSED: &str = "dsf_connections_refused_total";
/// The configured `limits.max_connections`, by `listener` (so alerts can say "near").
pub const CONNECTIONS_LIMIT: &str = "dsf_connections_limit";
/// Requests in flight, by `listener`.
pub const INFLIGHT: &str = "dsf_inflight_requests";
/// The configured `limits.max_inflight`, by `listener`.
pub const INFLIGHT_LIMIT: &str = "dsf_inflight_limit";
/// Requests answered `overloaded` because `limits.max_inflight` was reached, by `listener`.
pub const INFLIGHT_REFUSED: &str = "dsf_inflight_refused_total";
/// TLS handshakes that failed (plaintext client, certificate refused), by `listener`.
pub const TLS_HANDSHAKE_FAILURES: &str = "dsf_tls_handshake_failures_total";
/// Bytes read from clients, by `listener`.
pub const BYTES_IN: &str = "dsf_bytes_received_total";
/// Bytes written to clients, by `listener`.
pub const BYTES_OUT: &str = "dsf_bytes_sent_total";

/// Balancer: members by `state` (healthy, draining, unhealthy, ejected).
pub const BALANCER_NODES: &str = "dsf_balancer_nodes";
/// Balancer: requests the proxy forwarded, by `node`.
pub const BALANCER_PROXIED: &str = "dsf_balancer_proxied_total";
/// Balancer: directory assignments, by `node`.
pub const BALANCER_ASSIGNMENTS: &str = "dsf_balancer_assignments_total";
/// Balancer: requests retried on another node after a node failed.
pub const BALANCER_RETRIES: &str = "dsf_balancer_retries_total";
/// Balancer: leases that expired without a heartbeat.
pub const LEASE_EXPIRIES: &str = "dsf_balancer_lease_expiries_total";
/// Balancer: membership changes, by `change` (joined, left, draining, …).
pub const MEMBERSHIP_CHANGES: &str = "dsf_balancer_membership_changes_total";
/// Balancer: outlier ejections (the proxy could not reach a node), by `service` and `node`.
pub const BALANCER_EJECTIONS: &str = "dsf_balancer_node_ejections_total";
/// Balancer: members by `service` and `state`.
pub const BALANCER_SERVICE_NODES: &str = "dsf_balancer_service_nodes";

/// Readiness checks by `check` (store, cache, registration, nodes, etcd): 1 passing, 0 failing.
pub const READINESS_CHECK: &str = "dsf_readiness_check";

/// Node: store pool connections, by `node` and `state` (in_use, idle).
pub const STORE_POOL: &str = "dsf_store_pool_connections";
/// Node: requests waiting for a store connection, by `node`.
pub const STORE_POOL_WAITING: &str = "dsf_store_pool_waiting";
/// Node: store operations that failed as unavailable or timed out, by `node`.
pub const STORE_FAILURES: &str = "dsf_store_failures_total";
/// Node: blacklist reads that reached the store (cache misses and uncached reads), by `node`.
pub const STORE_BLACKLIST_READS: &str = "dsf_store_blacklist_reads_total";
/// Node: cache lookups by `node` and `result` (hit, miss).
pub const CACHE_LOOKUPS: &str = "dsf_cache_lookups_total";
/// Node: cache operations that failed or were skipped while the cache was down, by `node`.
pub const CACHE_ERRORS: &str = "dsf_cache_errors_total";
/// Node: cache fills dropped because a write invalidated the key meanwhile, by `node`.
pub const CACHE_STALE_FILLS: &str = "dsf_cache_stale_fills_total";

/// Gives every metric above its help text and unit. Run once, by [`install`], against
/// the recorder it builds.
fn describe() {
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "Requests answered, by operation (op) and result (code: ok or the error code)."
    );
    describe_histogram!(
        REQUEST_SECONDS,
        Unit::Seconds,
        "Time from a request's arrival to its answer, by operation (op)."
    );
    describe_gauge!(
        CONNECTIONS,
        Unit::Count,
        "Connections open now, by listener (node, proxy, directory, registration)."
    );
    describe_counter!(
        CONNECTIONS_ACCEPTED,
        Unit::Count,
        "Connections accepted, by listener."
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        Unit::Count,
        "Connections refused because limits.max_connections were open, by listener."
    );
    describe_gauge!(
        CONNECTIONS_LIMIT,
        Unit::Count,
        "The configured limits.max_connections, by listener."
    );
    describe_gauge!(
        INFLIGHT,
        Unit::Count,
        "Requests being handled now, by listener."
    );
    describe_gauge!(
        INFLIGHT_LIMIT,
        Unit::Count,
        "The configured limits.max_inflight, by listener."
    );
    describe_counter!(
        INFLIGHT_REFUSED,
        Unit::Count,
        "Requests answered overloaded because limits.max_inflight requests were in flight, by listener."
    );
    describe_counter!(
        TLS_HANDSHAKE_FAILURES,
        Unit::Count,
        "TLS handshakes that failed (a plaintext client, a certificate refused), by listener."
    );
    describe_counter!(
        BYTES_IN,
        Unit::Bytes,
        "Bytes read from clients, by listener."
    );
    describe_counter!(
        BYTES_OUT,
        Unit::Bytes,
        "Bytes written to clients, by listener."
    );
    describe_gauge!(
        BALANCER_NODES,
        Unit::Count,
        "Members of the balancer, by state (healthy, draining, unhealthy, ejected)."
    );
    describe_gauge!(
        BALANCER_SERVICE_NODES,
        Unit::Count,
        "Members of the balancer, by service and state (healthy, draining, unhealthy, ejected)."
    );
    describe_counter!(
        BALANCER_PROXIED,
        Unit::Count,
        "Requests the proxy forwarded, by node."
    );
    describe_counter!(
        BALANCER_ASSIGNMENTS,
        Unit::Count,
        "Directory answers (lb.assign) naming each node, by node."
    );
    describe_counter!(
        BALANCER_RETRIES,
        Unit::Count,
        "Proxied requests repeated on another node after their node failed."
    );
    describe_counter!(
        BALANCER_EJECTIONS,
        Unit::Count,
        "Nodes taken out of selection because the proxy could not reach them (outlier ejection), by service and node."
    );
    describe_counter!(
        LEASE_EXPIRIES,
        Unit::Count,
        "Node leases that ended because no heartbeat came within balancer.lease_ttl."
    );
    describe_counter!(
        MEMBERSHIP_CHANGES,
        Unit::Count,
        "Membership changes, by change (joined, left, draining, unhealthy, recovered, ejected, readmitted)."
    );
    describe_gauge!(
        READINESS_CHECK,
        Unit::Count,
        "Readiness checks as /readyz runs them, by check: 1 passing, 0 failing."
    );
    describe_gauge!(
        STORE_POOL,
        Unit::Count,
        "MySQL pool connections, by node and state (in_use, idle)."
    );
    describe_gauge!(
        STORE_POOL_WAITING,
        Unit::Count,
        "Requests waiting for a pooled MySQL connection, by node."
    );
    describe_counter!(
        STORE_FAILURES,
        Unit::Count,
        "Store operations that failed as unavailable or timed out, by node."
    );
    describe_counter!(
        STORE_BLACKLIST_READS,
        Unit::Count,
        "Blacklist reads that reached the store (cache misses and uncached reads), by node."
    );
    describe_counter!(
        CACHE_LOOKUPS,
        Unit::Count,
        "Cache lookups, by node and result (hit, miss)."
    );
    describe_counter!(
        CACHE_ERRORS,
        Unit::Count,
        "Cache operations that failed or were skipped while the cache was down, by node."
    );
    describe_counter!(
        CACHE_STALE_FILLS,
        Unit::Count,
        "Cache fills dropped because a write invalidated the key meanwhile, by node."
    );
}

/// Publishes a listener's configured limits ([`CONNECTIONS_LIMIT`], [`INFLIGHT_LIMIT`]),
/// so that alerts can compare the open connections and in-flight requests with them.
pub fn set_limits(listener: &'static str, max_connections: usize, max_inflight: usize) {
    metrics::gauge!(CONNECTIONS_LIMIT, "listener" => listener).set(max_connections as f64);
    metrics::gauge!(INFLIGHT_LIMIT, "listener" => listener).set(max_inflight as f64);
}

/// Publishes one readiness check's outcome ([`READINESS_CHECK`]).
pub fn set_readiness_check(check: &'static str, passing: bool) {
    metrics::gauge!(READINESS_CHECK, "check" => check).set(if passing { 1.0 } else { 0.0 });
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Functions that publish state-derived values (gauges, per-node totals) just
/// before each render, so hot paths only bump plain atomics.
type Collector = Box<dyn Fn() + Send + Sync>;
static COLLECTORS: std::sync::Mutex<Vec<Collector>> = std::sync::Mutex::new(Vec::new());

/// Adds a function run before every `/metrics` render.
pub fn add_collector(f: impl Fn() + Send + Sync + 'static) {
    COLLECTORS
        .lock()
        .expect("collectors lock")
        .push(Box::new(f));
}

/// Installs the recorder (first call) and returns the handle that renders it.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_seconds".into()),
                &[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5, 5.0,
                ],
            )
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Described against this recorder directly, so the text is there even when
        // another recorder is already global (tests that embed several servers).
        metrics::with_local_recorder(&recorder, describe);
        // Histogram samples wait in the recorder until a render or an upkeep folds
        // them into their buckets; with nobody scraping /metrics they would pile up
        // for ever (about 8 bytes per request). Fold them every few seconds.
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                upkeep.run_upkeep();
            })
            .expect("spawn the metrics upkeep thread");
        // Another recorder may exist in tests that embed several servers; rendering
        // then shows this one's view, which is still correct for the process.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The current metrics in Prometheus text format.
pub fn render() -> String {
    let handle = install();
    for collect in COLLECTORS.lock().expect("collectors lock").iter() {
        collect();
    }
    handle.render()
}
