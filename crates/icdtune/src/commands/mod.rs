//! One module per subcommand; `dispatch` is the only place that knows them all.

mod data;
mod eval;
mod icd;
mod report;

use crate::args::Command;

pub fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Data(args) => data::run(args),
        Command::Icd(args) => icd::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Report(args) => report::run(args),
    }
}
