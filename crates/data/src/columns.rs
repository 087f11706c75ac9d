//! Which column holds what: the configured names (or a preset's), matched against the names a file
//! actually has. Names are compared after trimming surrounding whitespace, because real files have
//! headers like `" Note"`.

use std::path::Path;

use serde::Serialize;

use crate::error::{looks_like_data, Columns};
use crate::spec::Preset;
use crate::DataError;

/// One wanted column: its name and whether the file must have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub name: String,
    /// `false` for defaults and preset extras (`ID`, `ICD10_desc`), which are used when present.
    pub required: bool,
}

/// The column mapping requested by config, flags and preset, before it meets a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnMap {
    pub text: Wanted,
    pub codes: Wanted,
    pub id: Option<Wanted>,
    pub meta: Vec<Wanted>,
    /// The column naming each row's part (`[data.split] column`); always required when set.
    pub split: Option<Wanted>,
    /// Splits one string cell into several codes; `None` means the cell holds one code (or a list).
    pub separator: Option<String>,
}

impl ColumnMap {
    /// Config values win over the preset; without either, columns named `text`, `codes` and `id` are
    /// used when the file has them.
    pub fn new(cfg: &config::DataConfig, preset: Option<Preset>) -> Result<ColumnMap, DataError> {
        let given = |v: &Option<String>| {
            v.as_ref().map(|n| Wanted {
                name: n.trim().to_string(),
                required: true,
            })
        };
        let default = |n: &str| Wanted {
            name: n.to_string(),
            required: false,
        };
        let (text_default, codes_default, id_default, meta_default) = match preset {
            Some(Preset::Medsynth) => ("Dialogue", "ICD10", "ID", vec![default("ICD10_desc")]),
            None => ("text", "codes", "id", Vec::new()),
        };
        let text = given(&cfg.text_column).unwrap_or_else(|| default(text_default));
        let mut meta = meta_default;
        for m in &cfg.meta_columns {
            let name = m.trim().to_string();
            if name == text.name {
                return Err(DataError::TextInMeta { column: name });
            }
            meta.retain(|w: &Wanted| w.name != name);
            meta.push(Wanted {
                name,
                required: true,
            });
        }
        // A preset's description column may coincide with a user-chosen text column; never copy text.
        meta.retain(|w| w.name != text.name);
        let codes = given(&cfg.codes_column).unwrap_or_else(|| default(codes_default));
        let id = given(&cfg.id_column).unwrap_or_else(|| default(id_default));
        let split = given(&cfg.split.column);
        if let Some(split) = &split {
            for (role, w) in [("text", &text), ("codes", &codes), ("id", &id)] {
                if w.name == split.name {
                    return Err(DataError::SplitColumnClash {
                        column: split.name.clone(),
                        role,
                    });
                }
            }
        }
        Ok(ColumnMap {
            codes,
            id: Some(id),
            text,
            meta,
            split,
            separator: cfg.codes_separator.clone().filter(|s| !s.is_empty()),
        })
    }

    /// Positions of the wanted columns among `available` (header names in file order).
    pub fn resolve(
        &self,
        available: &[String],
        path: &Path,
        row: Option<u64>,
    ) -> Result<Resolved, DataError> {
        let find = |name: &str| available.iter().position(|a| a.trim() == name);
        let trimmed = || Columns::shown(available);
        let first_row_is_data = looks_like_data(available);
        let must = |w: &Wanted, role: &'static str| {
            find(&w.name).ok_or_else(|| {
                if w.required {
                    DataError::MissingColumn {
                        path: path.to_path_buf(),
                        row,
                        role,
                        wanted: w.name.clone(),
                        available: trimmed(),
                        first_row_is_data,
                    }
                } else {
                    DataError::ColumnNotConfigured {
                        path: path.to_path_buf(),
                        role,
                        default: w.name.clone(),
                        available: trimmed(),
                        first_row_is_data,
                    }
                }
            })
        };
        let text = must(&self.text, "text")?;
        let codes = must(&self.codes, "codes")?;
        let id = match &self.id {
            Some(w) if w.required => Some(must(w, "id")?),
            Some(w) => find(&w.name),
            None => None,
        };
        let split = self.split.as_ref().map(|w| must(w, "split")).transpose()?;
        let mut meta = Vec::new();
        for w in &self.meta {
            match find(&w.name) {
                Some(i) => meta.push((w.name.clone(), i)),
                None if w.required => {
                    return Err(DataError::MissingColumn {
                        path: path.to_path_buf(),
                        row,
                        role: "meta",
                        wanted: w.name.clone(),
                        available: trimmed(),
                        first_row_is_data,
                    })
                }
                None => {}
            }
        }
        Ok(Resolved {
            text,
            codes,
            id,
            meta,
            split,
            names: ColumnsUsed {
                text: self.text.name.clone(),
                codes: self.codes.name.clone(),
                id: id.map(|i| available[i].trim().to_string()),
                meta: self
                    .meta
                    .iter()
                    .filter(|w| find(&w.name).is_some())
                    .map(|w| w.name.clone())
                    .collect(),
                codes_separator: self.separator.clone(),
                split: self.split.as_ref().map(|w| w.name.clone()),
            },
        })
    }
}

/// Column positions in one file (or one JSONL row).
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub text: usize,
    pub codes: usize,
    pub id: Option<usize>,
    pub meta: Vec<(String, usize)>,
    pub split: Option<usize>,
    pub names: ColumnsUsed,
}

/// The columns a load actually used, recorded in the source info and printed in summaries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnsUsed {
    pub text: String,
    pub codes: String,
    /// `None` when rows are named `row-<n>`.
    pub id: Option<String>,
    pub meta: Vec<String>,
    pub codes_separator: Option<String>,
    /// The column the split was read from (`[data.split] column`), when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
}

/// Splits one string cell into raw code strings: a JSON or Python-style list (`["A01", "B02"]`,
/// `['A01', 'B02']`, as pandas writes lists into CSV), several codes joined by `separator`, or one code.
/// Pieces are trimmed and empty pieces dropped, so an empty cell means "no label".
pub(crate) fn split_codes(cell: &str, separator: Option<&str>) -> Vec<String> {
    let cell = cell.trim();
    if cell.starts_with('[') && cell.ends_with(']') {
        if let Ok(list) = serde_json::from_str::<Vec<String>>(cell) {
            return clean(list.iter().map(String::as_str));
        }
        let inner = &cell[1..cell.len() - 1];
        return clean(
            inner
                .split(',')
                .map(|p| p.trim().trim_matches(|c| c == '\'' || c == '"')),
        );
    }
    match separator {
        Some(sep) => clean(cell.split(sep)),
        None => clean(std::iter::once(cell)),
    }
}

fn clean<'a>(pieces: impl Iterator<Item = &'a str>) -> Vec<String> {
    pieces
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_cells_split_by_list_separator_or_not_at_all() {
        assert_eq!(split_codes(" J06.9 ", None), vec!["J06.9"]);
        assert_eq!(split_codes("", None), Vec::<String>::new());
        assert_eq!(split_codes("J06.9; I10;", Some(";")), vec!["J06.9", "I10"]);
        assert_eq!(
            split_codes(r#"["J06.9","I10"]"#, None),
            vec!["J06.9", "I10"]
        );
        assert_eq!(split_codes("['J06.9', 'I10']", None), vec!["J06.9", "I10"]);
        assert_eq!(split_codes("[]", None), Vec::<String>::new());
        // Without a separator a joined cell stays one (malformed) code: reported, never guessed.
        assert_eq!(split_codes("J06.9;I10", None), vec!["J06.9;I10"]);
    }

    #[test]
    fn names_match_after_trimming_and_missing_ones_are_listed() {
        let cfg = config::DataConfig {
            text_column: Some("Note".into()),
            ..Default::default()
        };
        let map = ColumnMap::new(&cfg, Some(Preset::Medsynth)).unwrap();
        let cols: Vec<String> = [" Note", "Dialogue", "ICD10", "ICD10_desc"]
            .map(String::from)
            .to_vec();
        let r = map.resolve(&cols, Path::new("m.csv"), None).unwrap();
        assert_eq!((r.text, r.codes, r.id), (0, 2, None));
        assert_eq!(r.meta, vec![("ICD10_desc".to_string(), 3)]);

        let cfg = config::DataConfig {
            text_column: Some("body".into()),
            ..Default::default()
        };
        let err = ColumnMap::new(&cfg, None)
            .unwrap()
            .resolve(&cols, Path::new("m.csv"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"body\""), "{err}");
        assert!(
            err.contains("\"Note\", \"Dialogue\", \"ICD10\", \"ICD10_desc\""),
            "{err}"
        );
    }

    #[test]
    fn text_never_becomes_meta() {
        let cfg = config::DataConfig {
            text_column: Some("Note".into()),
            meta_columns: vec![" Note".into()],
            ..Default::default()
        };
        assert!(matches!(
            ColumnMap::new(&cfg, None),
            Err(DataError::TextInMeta { .. })
        ));
    }
}
