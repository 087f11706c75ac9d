//! `icdtune data stats|validate|split`: load a dataset with the resolved `[data]` settings, print a
//! readable summary on stdout and, with `--out`, write JSON next to the resolved config. Never prints
//! dialogue text: only counts, ids, rows, fields and codes.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use config::Config;
use data::{DataError, Dataset, Part, ProblemKind, Split, Stats, ValidationReport};
use icd::CodeTable;
use pipeline::{Flags, Settings};

use crate::args::{DataArgs, DataCommand, DataOpts};

pub fn run(args: DataArgs) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Stats(opts) => stats(&opts),
        DataCommand::Validate(opts) => validate(&opts),
        DataCommand::Split(opts) => split(&opts.data, opts.seed),
    }
}

/// Config file (or defaults) with the command-line flags applied on top.
fn resolve_config(opts: &DataOpts) -> anyhow::Result<Config> {
    let flags = Flags {
        dataset: opts.dataset.clone(),
        columns: opts.columns.to_flags(),
        ..Flags::default()
    };
    Ok(Settings::resolve(opts.config.file(), &flags)?.config)
}

/// Loads the dataset; a policy error still yields its report so `validate` can show it.
fn load(config: &Config, table: &CodeTable) -> Result<Dataset, DataError> {
    data::load_configured(&config.data, table)
}

/// Writes the resolved config and one JSON file into `--out`.
fn write_outputs<T: serde::Serialize>(
    out: Option<&Path>,
    config: &Config,
    name: &str,
    value: &T,
) -> anyhow::Result<()> {
    let Some(dir) = out else {
        return Ok(());
    };
    data::write_atomic(
        &dir.join("config.resolved.toml"),
        config.to_toml_string().as_bytes(),
    )?;
    let path = dir.join(name);
    data::write_json_atomic(&path, value)?;
    println!("wrote {}", path.display());
    Ok(())
}

fn stats(opts: &DataOpts) -> anyhow::Result<()> {
    let config = resolve_config(opts)?;
    let table = CodeTable::icd10cm();
    let dataset = load(&config, &table)?;
    let stats = data::stats(&dataset.examples, &table);
    print!("{}", source_summary(&dataset));
    print!("{}", stats_summary(&stats));
    print!("{}", problem_counts(&dataset.report));
    write_outputs(opts.out.as_deref(), &config, "stats.json", &stats)
}

fn validate(opts: &DataOpts) -> anyhow::Result<()> {
    let config = resolve_config(opts)?;
    let table = CodeTable::icd10cm();
    match load(&config, &table) {
        Ok(dataset) => {
            print!("{}", source_summary(&dataset));
            print!("{}", report_summary(&dataset.report, opts.limit));
            write_outputs(
                opts.out.as_deref(),
                &config,
                "validation.json",
                &dataset.report,
            )
        }
        Err(DataError::Policy {
            report,
            count,
            problem,
            path,
        }) => {
            print!("{}", report_summary(&report, opts.limit));
            write_outputs(opts.out.as_deref(), &config, "validation.json", &report)?;
            Err(DataError::Policy {
                report,
                count,
                problem,
                path,
            }
            .into())
        }
        Err(e) => Err(e.into()),
    }
}

fn split(opts: &DataOpts, seed: Option<u64>) -> anyhow::Result<()> {
    let mut config = resolve_config(opts)?;
    if let Some(seed) = seed {
        config.data.split.seed = seed;
    }
    let table = CodeTable::icd10cm();
    let dataset = load(&config, &table)?;
    let split = data::split(&dataset, &config.data.split).context("cannot split the dataset")?;
    print!("{}", source_summary(&dataset));
    print!("{}", split_summary(&split));
    write_outputs(opts.out.as_deref(), &config, "split.json", &split)
}

fn source_summary(d: &Dataset) -> String {
    let s = &d.source;
    let mut out = String::new();
    let _ = writeln!(out, "dataset    {}", s.path.display());
    let _ = writeln!(
        out,
        "format     {}{}  sha256 {}",
        format!("{:?}", s.format).to_lowercase(),
        s.preset
            .map(|p| format!(" (preset {})", format!("{p:?}").to_lowercase()))
            .unwrap_or_default(),
        s.sha256
    );
    let c = &s.columns;
    let _ = writeln!(
        out,
        "columns    text {:?}, codes {:?}, id {}",
        c.text,
        c.codes,
        c.id.as_ref()
            .map(|i| format!("{i:?}"))
            .unwrap_or_else(|| "(none: rows are named row-<n>)".into())
    );
    let r = &d.report;
    let _ = writeln!(
        out,
        "rows       read {}, kept {}, dropped {}",
        r.rows_read, r.rows_kept, r.rows_dropped
    );
    out
}

fn fmt_dist(d: &Option<data::Distribution>) -> String {
    match d {
        None => "-".into(),
        Some(d) => format!(
            "min {}  median {}  mean {:.1}  p95 {}  max {}",
            d.min, d.median, d.mean, d.p95, d.max
        ),
    }
}

fn stats_summary(s: &Stats) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nexamples {}   distinct codes {}",
        s.examples, s.distinct_codes
    );
    let _ = writeln!(
        out,
        "examples per code   {}",
        fmt_dist(&s.examples_per_code)
    );
    let hist = |b: &[data::Bucket]| {
        b.iter()
            .map(|b| format!("{}: {}", b.label, b.count))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let _ = writeln!(
        out,
        "  codes by examples  {}",
        hist(&s.examples_per_code_histogram)
    );
    let _ = writeln!(
        out,
        "codes per example   {}",
        fmt_dist(&s.codes_per_example)
    );
    let _ = writeln!(
        out,
        "  examples by codes  {}",
        hist(&s.codes_per_example_histogram)
    );
    let _ = writeln!(out, "text characters     {}", fmt_dist(&s.text_chars));
    let _ = writeln!(
        out,
        "text tokens (ws)    {}",
        fmt_dist(&s.text_whitespace_tokens)
    );
    let _ = writeln!(out, "\nchapter  range    examples  codes  title");
    for c in &s.chapters {
        let _ = writeln!(
            out,
            "{:<8} {:<8} {:>8}  {:>5}  {}",
            c.roman, c.range, c.examples, c.distinct_codes, c.title
        );
    }
    if s.no_chapter_occurrences > 0 {
        let _ = writeln!(
            out,
            "(no chapter) {} code occurrences",
            s.no_chapter_occurrences
        );
    }
    if !s.top_codes.is_empty() {
        let top: Vec<String> = s
            .top_codes
            .iter()
            .take(10)
            .map(|c| format!("{} ({})", c.code, c.examples))
            .collect();
        let _ = writeln!(out, "\nmost frequent codes  {}", top.join(", "));
    }
    out
}

fn problem_counts(r: &ValidationReport) -> String {
    let mut out = String::new();
    // What the readers tolerated (a `.gz` name on plain text, a quote closed on a later line):
    // kept, but never silent.
    for note in &r.reader_notes {
        let _ = writeln!(out, "note: {note}");
    }
    if r.counts.is_empty() {
        let _ = writeln!(out, "\nno data problems found");
        return out;
    }
    let _ = writeln!(
        out,
        "\nproblem                 count   rows  dropped rows  policy"
    );
    for kind in ProblemKind::ALL {
        if let Some(c) = r.counts.get(&kind) {
            let _ = writeln!(
                out,
                "{:<22} {:>6} {:>6} {:>13}  {}",
                kind.label(),
                c.problems,
                c.rows,
                c.rows_dropped,
                policy_name(&r.policy, kind)
            );
        }
    }
    out
}

fn policy_name(p: &config::PolicyConfig, kind: ProblemKind) -> &'static str {
    match kind.policy(p) {
        config::Policy::Error => "error",
        config::Policy::Drop => "drop",
        config::Policy::Flag => "flag",
    }
}

fn report_summary(r: &ValidationReport, limit: usize) -> String {
    let mut out = problem_counts(r);
    let _ = writeln!(out, "(rows: {})", r.row_numbering);
    for kind in ProblemKind::ALL {
        let problems: Vec<_> = r.of_kind(kind).collect();
        if problems.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{} ({}):", kind.label(), problems.len());
        let shown = if limit == 0 { problems.len() } else { limit };
        for p in problems.iter().take(shown) {
            let _ = writeln!(out, "  {p} [{:?}]", p.action);
        }
        if problems.len() > shown {
            let _ = writeln!(
                out,
                "  ... {} more (--limit 0 shows all; --out DIR writes validation.json)",
                problems.len() - shown
            );
        }
    }
    out
}

fn split_summary(s: &Split) -> String {
    let mut out = String::new();
    let how = match (&s.column, s.seed, &s.ratios) {
        (Some(column), _, _) => format!("from column {column:?}, as given"),
        (None, Some(seed), Some(r)) => format!(
            "{} seed {seed}, target {:.2}/{:.2}/{:.2}",
            s.method, r.train, r.validation, r.test
        ),
        _ => s.method.clone(),
    };
    let _ = writeln!(out, "\nsplit      {how}");
    let _ = writeln!(out, "part        examples  share  distinct codes");
    for part in Part::ALL {
        if let Some(c) = s.counts.get(&part) {
            let _ = writeln!(
                out,
                "{:<11} {:>8}  {:>5.3}  {:>14}",
                part.name(),
                c.examples,
                c.share,
                c.distinct_codes
            );
        }
    }
    if s.unsatisfied.is_empty() {
        let _ = writeln!(
            out,
            "every code with >= {} examples is in train and test",
            data::MIN_EXAMPLES_TRAIN_AND_TEST
        );
    } else {
        let _ = writeln!(
            out,
            "{} codes with >= {} examples miss train or test:",
            s.unsatisfied.len(),
            data::MIN_EXAMPLES_TRAIN_AND_TEST
        );
        for u in &s.unsatisfied {
            let _ = writeln!(out, "  {} ({} examples): {}", u.code, u.examples, u.reason);
        }
    }
    out
}
