//! Command-line surface (clap derive). One variant per subcommand of the CLI contract in DESIGN.md;
//! each is handled by one module in `commands/`.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "icdtune", version, about, long_about = None)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug). Logs never contain dialogue text.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {}
