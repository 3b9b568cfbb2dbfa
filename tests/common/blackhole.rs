//! A TCP relay in front of one process that a test can switch into a black hole: it
//! keeps accepting connections but forwards nothing either way and answers nothing,
//! which is what a cut data path looks like to the side that sends.
//!
//! A connection that lost bytes to the black hole stays silent after the relay heals
//! (its streams are no longer whole); connections opened after healing forward again.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A relay listening on 127.0.0.1.
pub struct Relay {
    /// Where clients connect (advertise this as the node's address).
    pub addr: String,
    /// Where accepted connections are forwarded; set once the target is up.
    target: Arc<Mutex<Option<String>>>,
    /// Forward nothing while set.
    blackhole: Arc<AtomicBool>,
}

impl Relay {
    /// A relay on a free port, forwarding nowhere until [`forward_to`](Self::forward_to).
    pub fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let target: Arc<Mutex<Option<String>>> = Arc::default();
        let blackhole = Arc::new(AtomicBool::new(false));
        let (t, b) = (target.clone(), blackhole.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (t, b) = (t.clone(), b.clone());
                std::thread::spawn(move || serve(client, &t, b));
            }
        });
        Relay {
            addr,
            target,
            blackhole,
        }
    }

    /// Forwards connections to `target` from now on.
    pub fn forward_to(&self, target: &str) {
        *self.target.lock().unwrap() = Some(target.to_owned());
    }

    /// Drops everything from now on (`true`), or forwards again (`false`).
    pub fn set_blackhole(&self, on: bool) {
        self.blackhole.store(on, Ordering::SeqCst);
    }
}

fn serve(client: TcpStream, target: &Mutex<Option<String>>, blackhole: Arc<AtomicBool>) {
    let to = loop {
        if let Some(t) = target.lock().unwrap().clone() {
            break t;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let Ok(upstream) = TcpStream::connect(&to) else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let broken = Arc::new(AtomicBool::new(false));
    let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let (b2, k2) = (blackhole.clone(), broken.clone());
    std::thread::spawn(move || pump(c2, u2, &b2, &k2));
    pump(upstream, client, &blackhole, &broken);
}

/// Copies `from` to `to`, dropping what arrives while the relay is a black hole (and,
/// once anything was dropped, everything after it).
fn pump(mut from: TcpStream, mut to: TcpStream, blackhole: &AtomicBool, broken: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if blackhole.load(Ordering::SeqCst) {
                    broken.store(true, Ordering::SeqCst);
                }
                if broken.load(Ordering::SeqCst) {
                    continue;
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
