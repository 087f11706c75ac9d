//! `icdtune serve`: the local coding assistant (`pipeline::suggest::serve`): HTTP API and page on
//! 127.0.0.1 unless told otherwise, with a bearer token required for other addresses.

use pipeline::suggest::{serve, SuggestRequest};
use pipeline::{Flags, Settings};
use serve::{ServeConfig, Token};

use crate::args::ServeArgs;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let flags = Flags {
        device: args.compute.device.clone(),
        ..Flags::default()
    };
    let settings = Settings::resolve(args.config.file(), &flags)?;
    let serve_config = serve_config(&args)?;
    let request = SuggestRequest {
        model: args.model,
        adapter: args.adapter,
        labels: args.labels,
    };
    serve(&settings, &request, serve_config, &|addr| {
        eprintln!("icdtune serve: listening on {addr} (Ctrl-C stops)")
    })
}

fn serve_config(args: &ServeArgs) -> anyhow::Result<ServeConfig> {
    let mut cfg = ServeConfig {
        bind: args.bind,
        ..ServeConfig::default()
    };
    if let Some(path) = &args.token_file {
        cfg.token = Some(Token::from_file(path)?);
    }
    if let Some(n) = args.max_waiting {
        cfg.max_waiting = n;
    }
    cfg.validate()?;
    Ok(cfg)
}
