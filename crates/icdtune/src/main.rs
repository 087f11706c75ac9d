//! `icdtune`: one binary for data, training, evaluation, reporting and serving. All work is local;
//! only `icdtune fetch` may open network connections.

mod args;
mod commands;
mod console;
mod interrupt;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Before any thread or tensor exists: see lm::threads for the measurement behind it.
    lm::threads::prefer_single_elementwise_thread();
    let cli = args::Cli::parse();
    init_logging(cli.verbose);
    match commands::dispatch(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_chain(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line (hints stay on their own lines), skipping a cause whose
/// text the message before it already carries: many library errors quote their OS error, which
/// `{:#}` would print a second time.
fn error_chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Logs go to stderr so that stdout stays machine-readable (JSON from `predict`, tables from `data`).
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ICDTUNE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
