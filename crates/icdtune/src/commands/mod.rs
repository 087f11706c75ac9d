//! One module per subcommand; `dispatch` is the only place that knows them all. A command parses
//! its flags into `pipeline` settings, calls one `pipeline` function and prints the result; no
//! command imports another.

mod audit;
mod data;
mod eval;
mod export;
mod fetch;
mod icd;
mod predict;
mod report;
mod run;
mod serve;
mod train;

use crate::args::Command;

pub fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Audit(args) => audit::run(args),
        Command::Data(args) => data::run(args),
        Command::Icd(args) => icd::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Report(args) => report::run(args),
        Command::Run(args) => run::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Fetch(args) => fetch::run(args),
        Command::Train(args) => train::run(args),
        Command::Export(args) => export::run(args),
    }
}
