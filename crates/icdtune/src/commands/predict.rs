//! `icdtune predict`: ranked ICD-10 codes for one dialogue read from stdin, as JSON on stdout
//! (`pipeline::suggest::predict`). The dialogue is never logged or echoed.

use anyhow::Context;
use pipeline::suggest::{predict, PredictOptions, SuggestRequest};
use pipeline::{Flags, Settings};

use crate::args::PredictArgs;

pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    let flags = Flags {
        device: args.compute.device.clone(),
        ..Flags::default()
    };
    let settings = Settings::resolve(args.config.file(), &flags)?;
    let dialogue = prompt::fit::read_dialogue(std::io::stdin().lock())
        .context("reading the dialogue from stdin")?;
    let request = SuggestRequest {
        model: args.model,
        adapter: args.adapter,
        labels: args.labels,
    };
    let options = PredictOptions {
        top_k: args.top_k,
        constrained: !args.no_constrain,
    };
    let output = predict(&settings, &request, &dialogue, options)?;
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}
