//! `dsf bench`: a closed-loop load generator speaking the DSF protocol.
//!
//! Each connection keeps `depth` requests in flight (depth 1 = unpipelined), sends a
//! new one as each response arrives, and records the latency of every response in an
//! HDR histogram. The same tool drives a node, a proxy and the raw baseline server,
//! so their numbers compare directly.

use crate::protocol::frame::{self, FrameDecoder};
use crate::protocol::{Notice, Request, Response};
use clap::Args;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// `dsf bench` arguments.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Address to load (a node or a proxy port).
    #[arg(long)]
    pub target: String,
    /// Operation to call.
    #[arg(long, default_value = "sys.echo")]
    pub op: String,
    /// Request body (JSON object); each `{key}` is replaced by a random number below
    /// `--keys` (the older spelling, n in braces, too).
    #[arg(long, default_value = "{}")]
    pub body: String,
    /// Size of the `{key}` key space.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Session token sent with every request.
    #[arg(long)]
    pub token: Option<String>,
    /// Connections.
    #[arg(long, default_value_t = 64)]
    pub conns: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1)]
    pub depth: usize,
    /// Measured duration.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Unmeasured warm-up before it.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Load-generator threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    pub json: bool,
    /// Label for the output.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Speak TLS, verifying the target against this PEM CA bundle.
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Name the target's certificate must carry (default: the host of --target).
    #[arg(long, requires = "tls_ca")]
    pub tls_server_name: Option<String>,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The run's label.
    pub label: String,
    /// Operation.
    pub op: String,
    /// Connections.
    pub conns: usize,
    /// Depth.
    pub depth: usize,
    /// Successful responses per second.
    pub rps: f64,
    /// Responses with `ok: false`.
    pub errors: u64,
    /// Error counts by code.
    pub error_codes: HashMap<String, u64>,
    /// Median latency, microseconds.
    pub p50_us: u64,
    /// 99th percentile latency, microseconds.
    pub p99_us: u64,
    /// Worst latency, microseconds.
    pub max_us: u64,
    /// Connections that failed (connect or I/O).
    pub failed_conns: usize,
    /// Connections the server ended with `goaway` (PROTOCOL §7), replaced by new ones.
    pub goaways: u64,
    /// Requests sent in the measured window and never answered.
    pub lost: u64,
    /// Reconnections (after a `goaway`) that were refused, then tried again.
    pub refused_conns: u64,
}

struct ConnResult {
    hist: Histogram<u64>,
    ok: u64,
    errors: HashMap<String, u64>,
    failed: bool,
    /// Connections the server ended with `goaway`, replaced by new ones.
    goaways: u64,
    /// Requests sent and never answered (the connection ended first).
    lost: u64,
    /// Reconnections refused.
    refused: u64,
}

/// Runs the benchmark and prints the report.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let report = measure(&args)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{:<24} {:>14} conns={:<4} depth={:<3} {:>10.0} req/s  p50={:>6}us  p99={:>6}us  max={:>7}us  errors={}",
            report.label, report.op, report.conns, report.depth, report.rps, report.p50_us,
            report.p99_us, report.max_us, report.errors
        );
        if report.goaways + report.lost + report.refused_conns > 0 {
            println!(
                "{:<24} goaways={} lost={} refused_conns={} failed_conns={}",
                "", report.goaways, report.lost, report.refused_conns, report.failed_conns
            );
        }
    }
    Ok(())
}

/// Runs the benchmark and returns what it measured.
pub fn measure(args: &BenchArgs) -> anyhow::Result<BenchReport> {
    let template: Value =
        serde_json::from_str(&args.body).map_err(|e| anyhow::anyhow!("--body is not JSON: {e}"))?;
    anyhow::ensure!(template.is_object(), "--body must be a JSON object");
    let tls = match &args.tls_ca {
        None => None,
        Some(ca) => {
            let cfg = crate::config::TlsConfig {
                ca: ca.clone(),
                ..Default::default()
            };
            let c = crate::tls::Tls::from_config(&cfg)?.and_then(|t| t.connector());
            match (c, &args.tls_server_name) {
                (Some(c), Some(name)) => Some(c.with_server_name(name.clone())),
                (c, _) => c,
            }
        }
    };
    let rt = crate::runtime::Runtime::new("dsf-bench", args.threads)?;
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let tasks: Vec<_> = (0..args.conns)
        .map(|_| rt.spawn(one_conn(args.clone(), tls.clone(), measure_from, end)))
        .collect();
    let results: Vec<ConnResult> = smol::block_on(async {
        let mut v = Vec::new();
        for t in tasks {
            v.push(t.await);
        }
        v
    });
    let mut hist = Histogram::<u64>::new(3)?;
    let mut ok = 0;
    let mut error_codes: HashMap<String, u64> = HashMap::new();
    let mut failed_conns = 0;
    let (mut goaways, mut lost, mut refused_conns) = (0, 0, 0);
    for r in results {
        goaways += r.goaways;
        lost += r.lost;
        refused_conns += r.refused;
        hist.add(&r.hist)?;
        ok += r.ok;
        for (k, v) in r.errors {
            *error_codes.entry(k).or_default() += v;
        }
        failed_conns += r.failed as usize;
    }
    Ok(BenchReport {
        label: if args.label.is_empty() {
            args.target.clone()
        } else {
            args.label.clone()
        },
        op: args.op.clone(),
        conns: args.conns,
        depth: args.depth,
        rps: ok as f64 / args.duration.as_secs_f64(),
        errors: error_codes.values().sum(),
        error_codes,
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        max_us: hist.max(),
        failed_conns,
        goaways,
        lost,
        refused_conns,
    })
}

/// The placeholders of `--body`: `{key}`, and `{n}` as scripts wrote it first (clap's
/// help shows `{n}` as a line break, so the help names `{key}`).
const PLACEHOLDERS: [&str; 2] = ["{key}", "{n}"];

fn body_for(args: &BenchArgs, rng: &mut impl rand::Rng) -> Value {
    if PLACEHOLDERS.iter().any(|p| args.body.contains(p)) {
        let n = rng.gen_range(0..args.keys.max(1)).to_string();
        let body = PLACEHOLDERS
            .iter()
            .fold(args.body.clone(), |b, p| b.replace(p, &n));
        serde_json::from_str(&body).unwrap_or(Value::Null)
    } else {
        serde_json::from_str(&args.body).unwrap_or(Value::Null)
    }
}

async fn one_conn(
    args: BenchArgs,
    tls: Option<crate::tls::Connector>,
    measure_from: Instant,
    end: Instant,
) -> ConnResult {
    let mut result = ConnResult {
        hist: Histogram::new(3).expect("3 significant figures is valid"),
        ok: 0,
        errors: HashMap::new(),
        failed: false,
        goaways: 0,
        lost: 0,
        refused: 0,
    };
    let mut load = Load {
        rng: <rand::rngs::StdRng as rand::SeedableRng>::from_entropy(),
        next_id: 1,
    };
    let mut first = true;
    while Instant::now() < end {
        let connected =
            crate::tls::ClientStream::connect(&args.target, tls.as_ref(), Duration::from_secs(10));
        let Ok(stream) = connected.await else {
            if first {
                result.failed = true;
                return result;
            }
            // A refused reconnection (after goaway) is counted, and tried again.
            result.refused += 1;
            async_io::Timer::after(Duration::from_millis(20)).await;
            continue;
        };
        first = false;
        match one_stream(&args, stream, &mut load, &mut result, measure_from, end).await {
            Ended::GoAway => result.goaways += 1,
            Ended::Done => return result,
            Ended::Failed => {
                result.failed = Instant::now() < end;
                return result;
            }
        }
    }
    result
}

/// What a bench connection keeps across reconnections.
struct Load {
    rng: rand::rngs::StdRng,
    next_id: u64,
}

/// How one bench connection ended.
enum Ended {
    /// The server sent `goaway` and answered everything sent: connect again.
    GoAway,
    /// The run is over.
    Done,
    /// The connection failed (requests still waiting are counted as lost).
    Failed,
}

/// Drives one connection until the run ends, it fails, or the server's `goaway`
/// (PROTOCOL §7) has been followed by the answers to everything sent before it.
async fn one_stream(
    args: &BenchArgs,
    mut stream: crate::tls::ClientStream,
    load: &mut Load,
    result: &mut ConnResult,
    measure_from: Instant,
    end: Instant,
) -> Ended {
    let mut sent: HashMap<u64, Instant> = HashMap::with_capacity(args.depth * 2);
    let mut out = Vec::new();
    let mut dec = FrameDecoder::new(crate::protocol::DEFAULT_MAX_FRAME * 16);
    let mut goaway = false;
    let push = |out: &mut Vec<u8>, sent: &mut HashMap<u64, Instant>, load: &mut Load| {
        let mut req = Request::new(load.next_id, args.op.clone(), body_for(args, &mut load.rng));
        req.token = args.token.clone();
        req.encode(out);
        sent.insert(load.next_id, Instant::now());
        load.next_id += 1;
    };
    for _ in 0..args.depth.max(1) {
        push(&mut out, &mut sent, load);
    }
    let lose = |result: &mut ConnResult, sent: &HashMap<u64, Instant>| {
        result.lost += sent.values().filter(|t0| **t0 >= measure_from).count() as u64;
    };
    loop {
        if !out.is_empty() {
            // A TLS stream holds records until flushed; plain TCP's flush is a no-op.
            if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                lose(result, &sent);
                return Ended::Failed;
            }
            out.clear();
        }
        // Read what is available, then answer every completed frame.
        let n = {
            let buf = dec.read_buf();
            let offered = buf.len();
            let n = stream.read(buf).await.unwrap_or(0);
            dec.advance(n, offered);
            n
        };
        if n == 0 {
            lose(result, &sent);
            if goaway && sent.is_empty() {
                return Ended::GoAway;
            }
            return if Instant::now() < end {
                Ended::Failed
            } else {
                Ended::Done
            };
        }
        let now = Instant::now();
        while let Ok(Some(payload)) = dec.next_frame() {
            let resp = match Response::parse(payload) {
                Ok(resp) => resp,
                Err(_) => match Notice::parse(payload) {
                    // No new request on this connection; the rest are answered.
                    Some(notice) if notice.is_goaway() => {
                        goaway = true;
                        continue;
                    }
                    Some(_) => continue,
                    None => {
                        lose(result, &sent);
                        return Ended::Failed;
                    }
                },
            };
            let Some(t0) = resp.id.and_then(|id| sent.remove(&id)) else {
                continue;
            };
            if t0 >= measure_from && now <= end {
                match &resp.result {
                    Ok(_) => {
                        result.ok += 1;
                        let _ = result
                            .hist
                            .record(now.duration_since(t0).as_micros() as u64);
                    }
                    Err(e) => *result.errors.entry(e.code.as_str().to_owned()).or_default() += 1,
                }
            }
            if now < end && !goaway {
                push(&mut out, &mut sent, load);
            }
        }
        if goaway && sent.is_empty() {
            // Everything sent was answered: this connection is done.
            return if now < end {
                Ended::GoAway
            } else {
                Ended::Done
            };
        }
        if now >= end && sent.is_empty() {
            return Ended::Done;
        }
        if now >= end + Duration::from_secs(5) {
            lose(result, &sent);
            return Ended::Done;
        }
    }
}

/// Reads exactly one frame (helper for tools that do not pipeline).
pub async fn read_one(stream: &mut async_net::TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut dec = FrameDecoder::new(crate::protocol::DEFAULT_MAX_FRAME);
    frame::read_frame(stream, &mut dec).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn args(extra: &[&str]) -> BenchArgs {
        let mut argv = vec!["bench", "--target", "127.0.0.1:1"];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).args
    }

    #[test]
    fn both_placeholders_take_one_random_key() {
        let mut rng = rand::thread_rng();
        for body in [
            r#"{"a":"K-{key}","b":"{key}"}"#,
            r#"{"a":"K-{n}","b":"{n}"}"#,
        ] {
            let a = args(&["--body", body, "--keys", "7"]);
            for _ in 0..50 {
                let v = body_for(&a, &mut rng);
                let b = v["b"].as_str().unwrap();
                assert_eq!(v["a"], format!("K-{b}"), "{v}");
                assert!(b.parse::<u64>().unwrap() < 7, "{v}");
            }
        }
        let plain = args(&["--body", r#"{"x":1}"#]);
        assert_eq!(body_for(&plain, &mut rng), serde_json::json!({"x": 1}));
    }

    #[test]
    fn help_shows_the_placeholder() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("each `{key}` is replaced"), "{help}");
    }
}
