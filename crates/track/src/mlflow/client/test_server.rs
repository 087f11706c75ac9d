//! A one-thread fake MLflow server for the client's unit tests: it answers canned responses in order
//! and records each request line and body, so tests can assert what was sent, how often, and that
//! retries stop where they should.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::ClientOptions;

/// A request as the fake server saw it: request line and body.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub(super) line: String,
    pub(super) body: String,
}

/// Serves the canned `(status, body)` answers in order, one per connection, and records requests.
pub(super) fn fake_server(answers: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for (status, body) in answers {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut buf = vec![0u8; len];
            reader.read_exact(&mut buf).unwrap();
            log.lock().unwrap().push(Seen {
                line: line.trim().to_string(),
                body: String::from_utf8_lossy(&buf).into_owned(),
            });
            let mut stream = stream;
            write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        }
    });
    (uri, seen)
}

/// Client options with millisecond backoff, so retry tests stay fast.
pub(super) fn fast() -> ClientOptions {
    ClientOptions {
        retry_backoff: Duration::from_millis(1),
        timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}
