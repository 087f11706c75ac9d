//! `icdtune export`: a model with its adapter merged, as a GGUF file or a Hugging Face folder
//! (`pipeline::export::export`); prints what was written as JSON.

use anyhow::bail;
use lm::export::gguf::GgufQuant;
use pipeline::export::{export, ExportFormat, ExportRequest};

use crate::args::{ExportArgs, ExportFormatArg, QuantArg};

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let format = match (args.format, args.quant) {
        (ExportFormatArg::Safetensors, None) => ExportFormat::Safetensors,
        (ExportFormatArg::Safetensors, Some(_)) => {
            bail!("--quant applies to --format gguf only (safetensors are written in f32)")
        }
        (ExportFormatArg::Gguf, quant) => ExportFormat::Gguf(match quant {
            None | Some(QuantArg::F16) => GgufQuant::F16,
            Some(QuantArg::Q8_0) => GgufQuant::Q8_0,
            Some(QuantArg::Q4_0) => GgufQuant::Q4_0,
        }),
    };
    let request = ExportRequest {
        model: args.model,
        adapter: args.adapter,
        format,
        out: args.out,
    };
    let output = export(&request)?;
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}
