//! Bounded load test of a running server on loopback (see `serve::load_test`), for
//! `bench/serve_load.sh`. Prints the report as text and as one JSON line; exits 1 when any request
//! failed with something other than the intended 503 (queue full).
//!
//! Usage: `load ADDR CLIENTS REQUESTS_PER_CLIENT BODY_FILE [TOKEN_FILE]`

use std::net::SocketAddr;
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: load ADDR CLIENTS REQUESTS_PER_CLIENT BODY_FILE [TOKEN_FILE]");
    ExitCode::from(2)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(4..=5).contains(&args.len()) {
        return usage();
    }
    let (Ok(addr), Ok(clients), Ok(per_client)) = (
        args[0].parse::<SocketAddr>(),
        args[1].parse::<usize>(),
        args[2].parse::<usize>(),
    ) else {
        return usage();
    };
    let body = match std::fs::read_to_string(&args[3]) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: {e}", args[3]);
            return ExitCode::from(2);
        }
    };
    let token = match args.get(4).map(std::fs::read_to_string).transpose() {
        Ok(t) => t.map(|t| t.trim().to_string()),
        Err(e) => {
            eprintln!("token file: {e}");
            return ExitCode::from(2);
        }
    };
    match serve::load_test(addr, clients, per_client, &body, token.as_deref()).await {
        Ok(report) => {
            println!("{report}");
            println!(
                "{}",
                serde_json::to_string(&report).expect("report serialises")
            );
            if report.other_errors > 0 {
                eprintln!(
                    "{} requests failed with an unexpected status",
                    report.other_errors
                );
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
