//! Judging raw rows: every problem is found, listed with its row and field, and handled by the policy
//! for its kind (error / drop / flag). Nothing is dropped without a count and a line in the report.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use config::{Policy, PolicyConfig};
use icd::{Code, CodeTable};
use serde::Serialize;
use types::Example;

use crate::read::RawRow;
use crate::text::normalize_text;
use crate::DataError;

/// The kinds of data problems, each with its own policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    EmptyText,
    MissingLabel,
    MalformedCode,
    UnknownCode,
    NonLeafCode,
    DuplicateText,
}

impl ProblemKind {
    pub const ALL: [ProblemKind; 6] = [
        ProblemKind::EmptyText,
        ProblemKind::MissingLabel,
        ProblemKind::MalformedCode,
        ProblemKind::UnknownCode,
        ProblemKind::NonLeafCode,
        ProblemKind::DuplicateText,
    ];

    /// The key of this kind in `[data.policy]`.
    pub fn policy_key(self) -> &'static str {
        match self {
            ProblemKind::EmptyText => "empty_text",
            ProblemKind::MissingLabel => "missing_label",
            ProblemKind::MalformedCode => "malformed_code",
            ProblemKind::UnknownCode => "unknown_code",
            ProblemKind::NonLeafCode => "non_leaf_code",
            ProblemKind::DuplicateText => "duplicate_text",
        }
    }

    /// Words for summaries.
    pub fn label(self) -> &'static str {
        match self {
            ProblemKind::EmptyText => "empty text",
            ProblemKind::MissingLabel => "missing label",
            ProblemKind::MalformedCode => "malformed code",
            ProblemKind::UnknownCode => "code not in table",
            ProblemKind::NonLeafCode => "non-leaf code",
            ProblemKind::DuplicateText => "duplicate text",
        }
    }

    /// The policy configured for this kind of problem.
    pub fn policy(self, p: &PolicyConfig) -> Policy {
        match self {
            ProblemKind::EmptyText => p.empty_text,
            ProblemKind::MissingLabel => p.missing_label,
            ProblemKind::MalformedCode => p.malformed_code,
            ProblemKind::UnknownCode => p.unknown_code,
            ProblemKind::NonLeafCode => p.non_leaf_code,
            ProblemKind::DuplicateText => p.duplicate_text,
        }
    }
}

/// What was done about one problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Policy `error`: loading fails.
    Error,
    /// Policy `drop`: the row is left out.
    Dropped,
    /// Policy `flag`: the row is kept (a malformed code cannot be kept and is left out of its codes).
    Flagged,
}

/// One problem of one row. Never contains dialogue text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// 1-based data row (CSV: header not counted; JSONL: line number; Parquet: record number).
    pub row: u64,
    /// The example id (from the id column, else `row-<n>`).
    pub id: String,
    /// The column the problem is in, as the file names it after trimming.
    pub field: String,
    /// The offending code as written in the file, for code problems; left out when the value is
    /// too long or wordy to be a code (see [`icd::redact`]), since it is then likely patient text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub detail: String,
    pub action: Action,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "row {} (id {}), field {:?}: {}",
            self.row,
            self.id,
            self.field,
            self.kind.label()
        )?;
        if let Some(code) = &self.code {
            write!(f, " {code:?}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// What a [`ReaderNote`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    /// The name says gzip and the bytes do not, or the other way round; the bytes decide.
    CompressionMismatch,
    /// A CSV record spans several lines in a file of one-line records (an unclosed quote?).
    MultilineRecord,
}

impl NoteKind {
    /// Words for summaries.
    pub fn label(self) -> &'static str {
        match self {
            NoteKind::CompressionMismatch => "compression differs from the name",
            NoteKind::MultilineRecord => "record spans several lines",
        }
    }
}

/// Something the reader tolerated that may not be what the file meant. The rows stay (the action is
/// always "flagged"); the note makes sure it is not silent. Never contains dialogue text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReaderNote {
    pub kind: NoteKind,
    /// 1-based data row, for notes about one row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
    /// 1-based line where the row starts (CSV).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    pub detail: String,
}

impl std::fmt::Display for ReaderNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(row) = self.row {
            write!(f, "row {row}")?;
            if let Some(line) = self.line {
                write!(f, " (line {line})")?;
            }
            write!(f, ": ")?;
        }
        write!(f, "{}: {}", self.kind.label(), self.detail)
    }
}

/// Count of one problem kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindCount {
    /// Problems of this kind (a row with two bad codes counts twice).
    pub problems: u64,
    /// Rows with at least one problem of this kind.
    pub rows: u64,
    /// Rows left out because of this kind (a row dropped for two kinds counts under both).
    pub rows_dropped: u64,
}

/// What validation found: counts, per-kind totals and every problem. Serialised as `validation.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidationReport {
    pub file: PathBuf,
    /// How `row` numbers are meant.
    pub row_numbering: String,
    /// Code system the codes were checked against.
    pub code_table: String,
    pub rows_read: u64,
    pub rows_kept: u64,
    pub rows_dropped: u64,
    pub policy: PolicyConfig,
    pub counts: BTreeMap<ProblemKind, KindCount>,
    pub problems: Vec<Problem>,
    /// What the reader tolerated (flagged, rows kept).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reader_notes: Vec<ReaderNote>,
}

impl ValidationReport {
    /// Problems whose policy is `error`.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.action == Action::Error)
    }

    /// Problems of one kind.
    pub fn of_kind(&self, kind: ProblemKind) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(move |p| p.kind == kind)
    }
}

/// Numbering rule for the report of a file format.
pub(crate) fn row_numbering(format: crate::Format) -> &'static str {
    match format {
        crate::Format::Csv => "1-based data row; the header line is not counted",
        crate::Format::Jsonl => "1-based line number (blank lines are counted; no header)",
        crate::Format::Parquet => "1-based record number",
    }
}

/// Validates raw rows into examples. Returns the kept examples, the data row each came from and
/// the report; problems with policy `error` are in the report and the caller turns them into an
/// error.
pub(crate) fn validate(
    rows: Vec<RawRow>,
    reader_notes: Vec<ReaderNote>,
    path: &Path,
    numbering: &str,
    fields: (&str, &str),
    policy: &PolicyConfig,
    table: &CodeTable,
) -> Result<(Vec<Example>, Vec<u64>, ValidationReport), DataError> {
    let (text_field, codes_field) = fields;
    let rows_read = rows.len() as u64;
    let mut problems: Vec<Problem> = Vec::new();
    let mut candidates: Vec<(u64, Example, bool)> = Vec::with_capacity(rows.len());
    for raw in rows {
        let id = raw.id.clone().unwrap_or_else(|| format!("row-{}", raw.row));
        let mut row_problems = Vec::new();
        let mut push = |kind: ProblemKind, field: &str, code: Option<&str>, detail: String| {
            row_problems.push(Problem {
                kind,
                row: raw.row,
                id: id.clone(),
                field: field.to_string(),
                code: code.map(str::to_string),
                detail,
                action: action(kind.policy(policy)),
            })
        };
        if raw.text.trim().is_empty() {
            push(
                ProblemKind::EmptyText,
                text_field,
                None,
                "the text is empty or only whitespace".into(),
            );
        }
        if raw.codes.is_empty() {
            push(
                ProblemKind::MissingLabel,
                codes_field,
                None,
                "no code".into(),
            );
        }
        let mut codes: Vec<Code> = Vec::with_capacity(raw.codes.len());
        for written in &raw.codes {
            let code = match Code::parse(written) {
                Ok(c) => c,
                Err(e) => {
                    let quotable = icd::redact::fits(written, icd::redact::CODE);
                    let detail = if quotable {
                        e.to_string()
                    } else {
                        format!(
                            "a value of {} characters is not a code and is not shown (is the text in the codes column?)",
                            written.chars().count()
                        )
                    };
                    push(
                        ProblemKind::MalformedCode,
                        codes_field,
                        quotable.then_some(written.as_str()),
                        detail,
                    );
                    continue;
                }
            };
            match table.get(&code) {
                None => push(
                    ProblemKind::UnknownCode,
                    codes_field,
                    Some(written),
                    unknown_detail(&code, table),
                ),
                Some(entry) if !entry.leaf => push(
                    ProblemKind::NonLeafCode,
                    codes_field,
                    Some(written),
                    format!(
                        "{} is a category with more specific codes below it, not a billable code",
                        code.dotted()
                    ),
                ),
                Some(_) => {}
            }
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        let dropped = row_problems.iter().any(|p| p.action == Action::Dropped);
        problems.extend(row_problems);
        let example = Example {
            id,
            text: raw.text,
            codes,
            meta: raw.meta,
        };
        candidates.push((raw.row, example, dropped));
    }

    // Duplicates are judged among the rows that survived the other checks, so a copy is only reported
    // against a row that is really in the data.
    let mut first_seen: HashMap<String, (u64, String)> = HashMap::new();
    for (row, example, dropped) in candidates.iter_mut() {
        if *dropped || example.text.trim().is_empty() {
            continue;
        }
        let key = normalize_text(&example.text);
        match first_seen.get(&key) {
            None => {
                first_seen.insert(key, (*row, example.id.clone()));
            }
            Some((first_row, first_id)) => {
                let act = action(ProblemKind::DuplicateText.policy(policy));
                problems.push(Problem {
                    kind: ProblemKind::DuplicateText,
                    row: *row,
                    id: example.id.clone(),
                    field: text_field.to_string(),
                    code: None,
                    detail: format!(
                        "same text (after case and whitespace normalisation) as row {first_row} (id {first_id})"
                    ),
                    action: act,
                });
                if act == Action::Dropped {
                    *dropped = true;
                }
            }
        }
    }
    problems.sort_by_key(|p| (p.row, p.kind));

    let mut counts: BTreeMap<ProblemKind, KindCount> = BTreeMap::new();
    let dropped_rows: std::collections::HashSet<u64> = candidates
        .iter()
        .filter(|(_, _, d)| *d)
        .map(|(r, _, _)| *r)
        .collect();
    let mut last: Option<(u64, ProblemKind)> = None;
    let mut counted_drop: std::collections::HashSet<(u64, ProblemKind)> = Default::default();
    for p in &problems {
        let c = counts.entry(p.kind).or_default();
        c.problems += 1;
        if last != Some((p.row, p.kind)) {
            c.rows += 1;
        }
        if p.action == Action::Dropped && counted_drop.insert((p.row, p.kind)) {
            c.rows_dropped += 1;
        }
        last = Some((p.row, p.kind));
    }
    candidates.retain(|(_, _, d)| !d);
    check_unique_ids(&candidates, path)?;
    let (rows, examples): (Vec<u64>, Vec<Example>) =
        candidates.into_iter().map(|(row, e, _)| (row, e)).unzip();
    let report = ValidationReport {
        file: path.to_path_buf(),
        row_numbering: numbering.to_string(),
        code_table: table.edition().label(),
        rows_read,
        rows_kept: examples.len() as u64,
        rows_dropped: dropped_rows.len() as u64,
        policy: policy.clone(),
        counts,
        problems,
        reader_notes,
    };
    Ok((examples, rows, report))
}

fn action(policy: Policy) -> Action {
    match policy {
        Policy::Error => Action::Error,
        Policy::Drop => Action::Dropped,
        Policy::Flag => Action::Flagged,
    }
}

/// Names the nearest ancestor the table knows, which is what a truncated code (`T81.4XX`) most likely
/// meant.
fn unknown_detail(code: &Code, table: &CodeTable) -> String {
    let mut up = code.parent();
    while let Some(parent) = up {
        if table.get(&parent).is_some() {
            return format!(
                "not in {}; nearest code in the table: {}",
                table.edition().label(),
                parent.dotted()
            );
        }
        up = parent.parent();
    }
    format!(
        "not in {}; its category {} is not either",
        table.edition().label(),
        code.category()
    )
}

/// Split files name examples by id, so ids of kept rows must be unique.
fn check_unique_ids(kept: &[(u64, Example, bool)], path: &Path) -> Result<(), DataError> {
    let mut seen: HashMap<&str, u64> = HashMap::with_capacity(kept.len());
    for (row, e, _) in kept {
        if let Some(first_row) = seen.insert(e.id.as_str(), *row) {
            return Err(DataError::DuplicateId {
                path: path.to_path_buf(),
                id: e.id.clone(),
                first_row,
                second_row: *row,
            });
        }
    }
    Ok(())
}
