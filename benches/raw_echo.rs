//! A minimal raw smol echo server with DSF framing: the baseline `dsf node` is
//! compared against in BENCHMARKS.md. It does what a node does for `sys.echo` —
//! decode the frame, parse the JSON, answer `{"id","ok","body"}` — with none of the
//! framework: no router, middleware, registry, limits or deadlines.
//!
//! Run: `cargo bench --bench raw_echo -- 127.0.0.1:7100 [threads]`, then point
//! `dsf bench --target 127.0.0.1:7100` at it.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use serde_json::Value;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7100".into());
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(2);
    let listener = std::net::TcpListener::bind(&addr)?;
    println!("raw echo listening on {}", listener.local_addr()?);
    let ex = std::sync::Arc::new(smol::Executor::new());
    for _ in 1..threads {
        let ex = ex.clone();
        std::thread::spawn(move || smol::block_on(ex.run(std::future::pending::<()>())));
    }
    smol::block_on(ex.run(async {
        let listener = async_net::TcpListener::try_from(listener)?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            ex.spawn(serve(stream)).detach();
        }
    }))
}

async fn serve(mut stream: async_net::TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut filled = 0;
    let mut out = Vec::new();
    loop {
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        let mut at = 0;
        while filled - at >= 4 {
            let len = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            if filled - at < 4 + len {
                break;
            }
            let v: Value =
                serde_json::from_slice(&buf[at + 4..at + 4 + len]).unwrap_or(Value::Null);
            let reply = serde_json::json!({"id": v.get("id"), "ok": true, "body": v.get("body")});
            let bytes = serde_json::to_vec(&reply)?;
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(&bytes);
            at += 4 + len;
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
        stream.write_all(&out).await?;
        out.clear();
    }
}
