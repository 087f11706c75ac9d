//! `icdtune icd lookup|search`: the code table from the command line, for checking a label or
//! finding a code by name.

use std::fmt::Write as _;

use ::icd::{Code, CodeTable, Entry};
use anyhow::Context;
use serde_json::{json, Value};

use crate::args::{IcdArgs, IcdCommand, IcdLookupOpts, IcdSearchOpts};

pub fn run(args: IcdArgs) -> anyhow::Result<()> {
    let table = match &args.table {
        Some(path) => CodeTable::from_path(path)
            .with_context(|| format!("loading code table {}", path.display()))?,
        None => CodeTable::icd10cm(),
    };
    match args.command {
        IcdCommand::Lookup(opts) => lookup(&table, &opts),
        IcdCommand::Search(opts) => search(&table, &opts),
    }
}

/// What one lookup found, or why it could not look.
enum Outcome {
    Found(Code),
    NotInTable(Code),
    Malformed(String),
}

fn lookup(table: &CodeTable, opts: &IcdLookupOpts) -> anyhow::Result<()> {
    let edition = table.edition().label();
    let mut failed = Vec::new();
    let mut results = Vec::new();
    let mut text = String::new();
    for input in &opts.codes {
        let outcome = match Code::parse(input) {
            Ok(code) if table.is_valid(&code) => Outcome::Found(code),
            Ok(code) => Outcome::NotInTable(code),
            Err(e) => Outcome::Malformed(e.to_string()),
        };
        let name = input.trim();
        match &outcome {
            Outcome::Found(_) => {}
            Outcome::NotInTable(_) => {
                eprintln!("{name}: well-formed, but not a code of {edition}");
                failed.push(name.to_string());
            }
            Outcome::Malformed(reason) => {
                eprintln!("{name}: not an ICD-10 code: {reason}");
                failed.push(name.to_string());
            }
        }
        if opts.json {
            results.push(lookup_json(table, input, &outcome));
        } else if let Some(block) = lookup_text(table, &outcome) {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&block);
        }
    }
    if opts.json {
        let doc = json!({ "edition": table.edition(), "codes": results });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{text}");
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} of {} codes are not valid {edition} codes: {}",
            failed.len(),
            opts.codes.len(),
            failed.join(", ")
        )
    }
}

/// The text block of one code; `None` for malformed input, whose error went to stderr.
fn lookup_text(table: &CodeTable, outcome: &Outcome) -> Option<String> {
    let mut out = String::new();
    let code = match outcome {
        Outcome::Malformed(_) => return None,
        Outcome::Found(code) => {
            let entry = table.get(code)?;
            let status = if entry.leaf {
                "valid, billable".to_string()
            } else {
                let below = table.descendants(code).filter(|e| e.leaf).count();
                format!("valid, not billable ({below} billable codes below it)")
            };
            let _ = writeln!(out, "{code}  {status}");
            let _ = writeln!(out, "  description  {}", entry.description);
            // A subcategory's parent is worth a line only when it is not the category itself.
            if let Some(parent) = table.parent(code).filter(|p| p.code.as_str().len() > 3) {
                let _ = writeln!(out, "  parent       {}", entry_line(parent));
            }
            code
        }
        Outcome::NotInTable(code) => {
            let _ = writeln!(
                out,
                "{code}  not valid: not a code of {}",
                table.edition().label()
            );
            if let Some(parent) = table.parent(code) {
                let _ = writeln!(out, "  nearest code {}", entry_line(parent));
            }
            code
        }
    };
    match table.category(code) {
        Some(cat) => {
            let _ = writeln!(out, "  category     {}", entry_line(cat));
        }
        None => {
            let _ = writeln!(out, "  category     {} (not in the table)", code.category());
        }
    }
    match table.block(code) {
        Some(b) => {
            let _ = writeln!(out, "  block        {}  {}", b.range(), b.title);
        }
        None => {
            let _ = writeln!(out, "  block        none");
        }
    }
    match table.chapter(code) {
        Some(c) => {
            let _ = writeln!(
                out,
                "  chapter      {} ({})  {}",
                c.roman,
                c.range(),
                c.title
            );
        }
        None => {
            let _ = writeln!(out, "  chapter      none (category outside every chapter)");
        }
    }
    Some(out)
}

fn entry_line(e: &Entry) -> String {
    format!("{}  {}", e.code, e.description)
}

fn entry_json(e: &Entry) -> Value {
    json!({ "code": e.code.dotted(), "description": e.description, "leaf": e.leaf })
}

fn lookup_json(table: &CodeTable, input: &str, outcome: &Outcome) -> Value {
    let code = match outcome {
        Outcome::Malformed(reason) => {
            return json!({
                "input": input,
                "code": null,
                "valid": false,
                "error": format!("not an ICD-10 code: {reason}"),
            })
        }
        Outcome::Found(code) | Outcome::NotInTable(code) => code,
    };
    let entry = table.get(code);
    let error = entry
        .is_none()
        .then(|| format!("{code} is not a code of {}", table.edition().label()));
    json!({
        "input": input,
        "code": code.dotted(),
        "valid": entry.is_some(),
        "leaf": entry.map(|e| e.leaf),
        "description": entry.map(|e| e.description.as_str()),
        "parent": table.parent(code).map(entry_json),
        "category": table.category(code).map(entry_json),
        "block": table.block(code),
        "chapter": table.chapter(code),
        "error": error,
    })
}

fn search(table: &CodeTable, opts: &IcdSearchOpts) -> anyhow::Result<()> {
    let query = opts.text.join(" ");
    let limit = if opts.limit == 0 {
        usize::MAX
    } else {
        opts.limit
    };
    let hits = table.search(&query, limit);
    if opts.json {
        let doc = json!({
            "edition": table.edition(),
            "query": query,
            "codes": hits.iter().map(|e| entry_json(e)).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    if hits.is_empty() {
        eprintln!(
            "no code or description of {} matches {query:?}",
            table.edition().label()
        );
        return Ok(());
    }
    let mut out = format!("{:<9} {:<9} description\n", "code", "billable");
    for e in hits {
        let billable = if e.leaf { "yes" } else { "no" };
        let _ = writeln!(
            out,
            "{:<9} {billable:<9} {}",
            e.code.dotted(),
            e.description
        );
    }
    print!("{out}");
    Ok(())
}
