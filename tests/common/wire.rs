//! A blocking raw-socket client for asserting on protocol bytes.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A raw connection with frame helpers.
pub struct Wire {
    /// The socket.
    pub stream: TcpStream,
}

/// Encodes one frame around `payload`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// A request frame.
pub fn request(id: u64, op: &str, body: Value) -> Vec<u8> {
    frame(
        json!({"id": id, "type": op, "body": body})
            .to_string()
            .as_bytes(),
    )
}

impl Wire {
    /// Connects with a 10 s read timeout.
    pub fn connect(addr: &str) -> Wire {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Wire { stream }
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads one frame and parses it as JSON; `None` at end of stream.
    pub fn recv(&mut self) -> Option<Value> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("read: {e}"),
        }
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut buf).expect("read payload");
        Some(serde_json::from_slice(&buf).expect("response is JSON"))
    }

    /// Sends one request and reads one response.
    pub fn call(&mut self, id: u64, op: &str, body: Value) -> Value {
        self.send(&request(id, op, body));
        self.recv().expect("a response")
    }

    /// True when the server has closed the connection (EOF or reset within 10 s).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
        }
    }
}

/// The error code of a failed response.
pub fn code(resp: &Value) -> &str {
    assert_eq!(resp["ok"], false, "expected an error: {resp}");
    resp["error"]["code"].as_str().expect("error code")
}
