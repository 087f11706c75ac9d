//! `icdtune serve`: the local coding assistant (`pipeline::suggest::serve`): HTTP API and page on
//! 127.0.0.1 unless told otherwise, with a bearer token required for other addresses. With
//! `--backend openai` the model is one an OpenAI-compatible server serves
//! (`pipeline::suggest::serve_remote`), behind the same page, auth, limits and code validation.

use anyhow::bail;
use config::{Backend, ModelConfig};
use pipeline::suggest::{serve, serve_remote, SuggestRequest};
use pipeline::{Flags, Settings};
use serve::{ServeConfig, Token};

use crate::args::{BackendArg, ServeArgs};

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let flags = Flags {
        device: args.compute.device.clone(),
        ..Flags::default()
    };
    let settings = Settings::resolve(args.config.file(), &flags)?;
    let on_listening = |addr| eprintln!("icdtune serve: listening on {addr} (Ctrl-C stops)");
    match args.backend {
        BackendArg::Local => {
            let serve_config = serve_config(&args, 1)?;
            let request = SuggestRequest {
                model: args.model,
                adapter: args.adapter,
                labels: args.labels,
            };
            serve(&settings, &request, serve_config, &on_listening)
        }
        BackendArg::Openai => {
            let model = served_model(&args)?;
            let remote = model.openai().expect("an openai entry");
            // The server batches: as many suggestions run at once as requests may be in flight.
            let serve_config = serve_config(&args, remote.max_concurrency)?;
            serve_remote(&settings, &model, serve_config, &on_listening)
        }
    }
}

/// The flags of `--backend openai` as a `[[models.llm]]` entry, so that the config's rules
/// (loopback or a token file, limits in range) apply to them unchanged.
fn served_model(args: &ServeArgs) -> anyhow::Result<ModelConfig> {
    if args.adapter.is_some() || args.labels.is_some() {
        bail!("--adapter and --labels apply to --backend local; a served model is the server's (serve the adapter there, see docs/SERVING.md)");
    }
    // Errors name the entry: here the served model's name.
    let mut model = ModelConfig::local(args.model.clone(), args.model.clone());
    model.backend = Backend::Openai;
    model.base_url = args.base_url.clone();
    model.token_file = args.backend_token_file.clone();
    model.constrain = args.constrain.map(Into::into);
    model.max_concurrency = args.max_concurrency;
    model
        .check_backend()
        .map_err(|message| anyhow::anyhow!("{message}"))?;
    Ok(model)
}

fn serve_config(args: &ServeArgs, max_running: usize) -> anyhow::Result<ServeConfig> {
    if args.backend == BackendArg::Local
        && (args.base_url.is_some()
            || args.backend_token_file.is_some()
            || args.constrain.is_some()
            || args.max_concurrency.is_some())
    {
        bail!("--base-url, --backend-token-file, --constrain and --max-concurrency apply to --backend openai");
    }
    let mut cfg = ServeConfig {
        bind: args.bind,
        max_running,
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
