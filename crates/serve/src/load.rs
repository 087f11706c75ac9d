//! A bounded load test for a running server on loopback: N clients, each on its own keep-alive
//! connection, send the same request a fixed number of times. Used against a fake suggester in the
//! tests and against the real model by hand.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

/// Upper bounds that keep a load test from turning into a flood.
const MAX_CLIENTS: usize = 256;
const MAX_REQUESTS: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("load tests run against loopback only, not {addr}")]
    NotLoopback { addr: SocketAddr },
    #[error("load test too large: {clients} clients x {per_client} requests (limits: {MAX_CLIENTS} clients, {MAX_REQUESTS} requests)")]
    TooLarge { clients: usize, per_client: usize },
    #[error("load test needs at least one client and one request")]
    Empty,
}

/// Outcome of a load test. Latency percentiles are over the successful (200) requests only: a 503
/// is answered at once and would make the model look faster than it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    pub clients: usize,
    pub requests: usize,
    pub ok: usize,
    pub status_503: usize,
    /// Any other status, or a connection error.
    pub other_errors: usize,
    pub wall_s: f64,
    /// Completed requests (any outcome) per second of wall time.
    pub rps: f64,
    /// Successful requests per second of wall time.
    pub ok_rps: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} clients, {} requests in {:.2} s: {} ok, {} x 503, {} other errors; {:.1} req/s \
             ({:.1} ok/s); latency of ok requests p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.clients,
            self.requests,
            self.wall_s,
            self.ok,
            self.status_503,
            self.other_errors,
            self.rps,
            self.ok_rps,
            self.p50_ms,
            self.p95_ms,
            self.p99_ms,
            self.max_ms
        )
    }
}

#[derive(Default)]
struct ClientTally {
    ok_latencies: Vec<Duration>,
    status_503: usize,
    other_errors: usize,
}

/// Runs `clients` concurrent clients that each POST `body` to `/v1/suggest` `requests_per_client`
/// times, with `Authorization: Bearer <token>` when a token is given.
pub async fn load_test(
    addr: SocketAddr,
    clients: usize,
    requests_per_client: usize,
    body: &str,
    token: Option<&str>,
) -> Result<LoadReport, LoadError> {
    if !addr.ip().is_loopback() {
        return Err(LoadError::NotLoopback { addr });
    }
    if clients == 0 || requests_per_client == 0 {
        return Err(LoadError::Empty);
    }
    if clients > MAX_CLIENTS || clients.saturating_mul(requests_per_client) > MAX_REQUESTS {
        return Err(LoadError::TooLarge {
            clients,
            per_client: requests_per_client,
        });
    }
    let body = Bytes::from(body.to_string());
    let authorization = token.map(|t| format!("Bearer {t}"));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let body = body.clone();
            let authorization = authorization.clone();
            tokio::spawn(run_client(addr, requests_per_client, body, authorization))
        })
        .collect();
    let mut tallies = Vec::with_capacity(clients);
    for task in tasks {
        tallies.push(task.await.unwrap_or_else(|_| ClientTally {
            other_errors: requests_per_client,
            ..ClientTally::default()
        }));
    }
    let wall_s = start.elapsed().as_secs_f64();
    Ok(summarise(clients, requests_per_client, tallies, wall_s))
}

async fn run_client(
    addr: SocketAddr,
    requests: usize,
    body: Bytes,
    authorization: Option<String>,
) -> ClientTally {
    let mut tally = ClientTally::default();
    let mut connection: Option<SendRequest<Full<Bytes>>> = None;
    for _ in 0..requests {
        if connection.as_ref().is_none_or(|c| c.is_closed()) {
            connection = connect(addr).await;
        }
        let Some(sender) = connection.as_mut() else {
            tally.other_errors += 1;
            continue;
        };
        let mut request = Request::post("/v1/suggest")
            .header(header::HOST, addr.to_string())
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(value) = &authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let Ok(request) = request.body(Full::new(body.clone())) else {
            tally.other_errors += 1;
            continue;
        };
        let sent = Instant::now();
        let outcome = match sender.ready().await {
            Ok(()) => sender.send_request(request).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(response) => {
                let status = response.status();
                let complete = response.into_body().collect().await.is_ok();
                match status {
                    StatusCode::OK if complete => tally.ok_latencies.push(sent.elapsed()),
                    StatusCode::SERVICE_UNAVAILABLE => tally.status_503 += 1,
                    _ => tally.other_errors += 1,
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "load-test request failed");
                tally.other_errors += 1;
                connection = None;
            }
        }
    }
    tally
}

async fn connect(addr: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "load-test connection closed");
        }
    });
    Some(sender)
}

fn summarise(
    clients: usize,
    per_client: usize,
    tallies: Vec<ClientTally>,
    wall_s: f64,
) -> LoadReport {
    let mut latencies: Vec<f64> = Vec::new();
    let (mut status_503, mut other_errors) = (0, 0);
    for tally in tallies {
        latencies.extend(tally.ok_latencies.iter().map(|d| d.as_secs_f64() * 1e3));
        status_503 += tally.status_503;
        other_errors += tally.other_errors;
    }
    latencies.sort_by(f64::total_cmp);
    let requests = clients * per_client;
    let ok = latencies.len();
    let per_s = |n: usize| if wall_s > 0.0 { n as f64 / wall_s } else { 0.0 };
    LoadReport {
        clients,
        requests,
        ok,
        status_503,
        other_errors,
        wall_s,
        rps: per_s(requests),
        ok_rps: per_s(ok),
        p50_ms: percentile(&latencies, 0.50),
        p95_ms: percentile(&latencies, 0.95),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or(0.0),
    }
}

/// Nearest-rank percentile of sorted values; 0 for none.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.50), 50.0);
        assert_eq!(percentile(&values, 0.95), 95.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
