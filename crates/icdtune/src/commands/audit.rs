//! `icdtune audit`: what did an adapter memorise (`pipeline::privacy::audit`)? Prints numbers
//! only, never dialogue text.

use pipeline::privacy::{audit, summary, AuditRequest};
use pipeline::{Flags, Settings};

use crate::args::AuditArgs;
use crate::console::Terminal;

pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    let flags = Flags {
        dataset: Some(args.dataset.dataset.clone()),
        device: args.compute.device.clone(),
        ..Flags::default()
    };
    let settings = Settings::resolve(args.config.file(), &flags)?;
    let request = AuditRequest {
        model: args.model,
        adapter: args.adapter,
        split_file: args.split_file,
        canaries: args.canaries,
        candidates: args.candidates,
        limit: args.limit,
        extraction: args.extraction,
        max_new_tokens: args.max_new_tokens,
        out: args.out,
    };
    let audited = audit(&settings, &request, &Terminal::default())?;
    println!("{}", summary(&audited.audit));
    match audited.report {
        Some(report) => println!(
            "wrote {}; privacy section added to {}",
            audited.file.display(),
            report.display()
        ),
        None => println!(
            "wrote {}; `icdtune report RUN_DIR` includes it when that folder is a run directory",
            audited.file.display()
        ),
    }
    Ok(())
}
