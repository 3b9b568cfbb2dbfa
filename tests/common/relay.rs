//! A TCP relay that can be *paused* the way a network partition looks to both ends:
//! connections stay open, bytes sent are accepted, and nothing arrives until the
//! partition heals (then everything does, in order, as TCP retransmission would).
//!
//! A pause can also be armed on a byte pattern: the relay pauses, both ways, just
//! before it forwards the first client chunk containing the pattern, so a test can cut
//! a connection between two chosen commands.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Shared switches of one relay.
#[derive(Default)]
struct State {
    /// Nothing is forwarded while set.
    paused: AtomicBool,
    /// Pause before forwarding a client chunk that contains this.
    pause_on: Mutex<Option<Vec<u8>>>,
    /// Set when the relay is dropped.
    closed: AtomicBool,
}

/// A relay from a local port to `upstream`.
pub struct Relay {
    /// `127.0.0.1:PORT` to connect to instead of the upstream.
    pub addr: String,
    state: Arc<State>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    /// Starts relaying connections made to [`Relay::addr`] to `upstream`.
    pub fn start(upstream: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay listener");
        let addr = listener.local_addr().expect("relay address").to_string();
        let state = Arc::new(State::default());
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (st, cs, up) = (state.clone(), conns.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.closed.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let server = match TcpStream::connect(&up) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("relay: cannot reach upstream {up}: {e}");
                        continue;
                    }
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut c = cs.lock().unwrap();
                    c.push(client.try_clone().expect("clone"));
                    c.push(server.try_clone().expect("clone"));
                }
                pump(
                    &st,
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                    true,
                );
                pump(&st, server, client, false);
            }
        });
        Relay { addr, state, conns }
    }

    /// `redis://ADDR` of the relay.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Cuts the path: bytes are accepted and held, nothing is delivered.
    pub fn pause(&self) {
        self.state.paused.store(true, Ordering::SeqCst);
    }

    /// Heals the path: held bytes are delivered in order.
    pub fn resume(&self) {
        *self.state.pause_on.lock().unwrap() = None;
        self.state.paused.store(false, Ordering::SeqCst);
    }

    /// Pauses before the first client chunk containing `pattern` is forwarded.
    pub fn pause_on(&self, pattern: &[u8]) {
        *self.state.pause_on.lock().unwrap() = Some(pattern.to_vec());
    }

    /// Whether the relay is paused now.
    pub fn is_paused(&self) -> bool {
        self.state.paused.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.state.closed.store(true, Ordering::SeqCst);
        self.state.paused.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Copies `from` to `to` on a thread, holding bytes while the relay is paused.
fn pump(state: &Arc<State>, mut from: TcpStream, mut to: TcpStream, client_side: bool) {
    let state = state.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if client_side {
                let mut armed = state.pause_on.lock().unwrap();
                if let Some(p) = armed.as_ref() {
                    if buf[..n].windows(p.len()).any(|w| w == p.as_slice()) {
                        state.paused.store(true, Ordering::SeqCst);
                        *armed = None;
                    }
                }
            }
            while state.paused.load(Ordering::SeqCst) && !state.closed.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(2));
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
