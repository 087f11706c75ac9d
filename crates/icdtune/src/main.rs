//! `icdtune`: one binary for data, training, evaluation, reporting and serving. All work is local;
//! only `icdtune fetch` may open network connections.

mod args;
mod commands;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Before any thread or tensor exists: see lm::threads for the measurement behind it.
    lm::threads::prefer_single_elementwise_thread();
    let cli = args::Cli::parse();
    init_logging(cli.verbose);
    match commands::dispatch(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line; hints are on their own lines.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
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
