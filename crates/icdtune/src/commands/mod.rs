//! One module per subcommand; `dispatch` is the only place that knows them all.

use crate::args::Command;

pub fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {}
}
