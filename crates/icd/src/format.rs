//! Reading the table file format written by `scripts/gen_icd_table.py` (described in
//! `crates/icd/README.md`): optionally gzip'd UTF-8 text, one tab-separated record per line.
//!
//! ```text
//! #icd-table<TAB>1
//! @name<TAB>ICD-10-CM            (also version, source, source_sha256; optional generated, generator)
//! C<TAB>3<TAB>III<TAB>D50<TAB>D89<TAB>Diseases of the blood ...
//! B<TAB>D50<TAB>D53<TAB>Nutritional anemias
//! E<TAB>D500<TAB>1<TAB>Iron deficiency anemia secondary to blood loss (chronic)
//! E<TAB>T8450<TAB>0<TAB>Infection and inflammatory reaction due to unspecified internal joint prosthesis
//! X<TAB>A<TAB>initial encounter        (a run of X records is the current 7th-character set)
//! X<TAB>D<TAB>subsequent encounter
//! X<TAB>S<TAB>sequela
//! 7<TAB>T8450X<TAB>ADS                 (leaves T8450XA, T8450XD, T8450XS: "<last E text>, <X text>")
//! ```
//!
//! Entries belong to the chapter and block listed last before them; that listing is the table's own
//! statement of membership, which tests hold the range-based lookups against. The X/7 records exist
//! because ICD-10-CM's 7th-character codes are half the table; writing their descriptions out would
//! more than double the text to decompress and scan on every load.

use std::io::Read;

use crate::code::Code;
use crate::hierarchy::{Block, Chapter, Edition, Entry};
use crate::TableError;

/// First line of every table file; the number is the format version.
pub(crate) const FORMAT_LINE: &str = "#icd-table\t1";

/// A parsed table before indexing.
pub(crate) struct Parsed {
    pub edition: Edition,
    pub chapters: Vec<Chapter>,
    pub blocks: Vec<Block>,
    pub entries: Vec<Entry>,
    /// Per entry: index of the chapter and block it is listed under.
    pub listed: Vec<(u16, u16)>,
    /// Per entry: 1-based line number, for error messages about duplicates.
    pub lines: Vec<u32>,
}

/// Returns the text of a table file, gunzipping it when it starts with the gzip magic bytes.
pub(crate) fn decode(bytes: &[u8], origin: &str) -> Result<String, TableError> {
    let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(gzip_size_hint(bytes));
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|source| TableError::Gzip {
                origin: origin.to_string(),
                source,
            })?;
        out
    } else {
        bytes.to_vec()
    };
    String::from_utf8(raw).map_err(|e| TableError::Utf8 {
        origin: origin.to_string(),
        offset: e.utf8_error().valid_up_to(),
    })
}

/// The uncompressed size from the gzip trailer (modulo 4 GiB), capped so a corrupt trailer cannot
/// make us reserve absurd memory.
fn gzip_size_hint(bytes: &[u8]) -> usize {
    const CAP: usize = 256 << 20;
    bytes
        .len()
        .checked_sub(4)
        .and_then(|at| bytes.get(at..))
        .and_then(|tail| <[u8; 4]>::try_from(tail).ok())
        .map_or(0, |t| (u32::from_le_bytes(t) as usize).min(CAP))
}

pub(crate) fn parse(text: &str, origin: &str) -> Result<Parsed, TableError> {
    let mut parser = Parser::new(origin);
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or("").trim_end_matches('\r');
    if first != FORMAT_LINE {
        return Err(TableError::NotATable {
            origin: origin.to_string(),
            found: first.chars().take(60).collect(),
        });
    }
    for (i, line) in lines.enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        parser.line(i + 2, line)?;
    }
    parser.finish()
}

struct Parser<'a> {
    origin: &'a str,
    header: Vec<(String, String)>,
    chapters: Vec<Chapter>,
    blocks: Vec<Block>,
    entries: Vec<Entry>,
    listed: Vec<(u16, u16)>,
    lines: Vec<u32>,
    /// The current 7th-character set: (character, text).
    extensions: Vec<(char, String)>,
    /// Whether the previous record was an X record (so the next X extends the set, not replaces it).
    in_extension_run: bool,
    /// Index of the last E entry of the current block, the base of 7 records.
    last_entry: Option<usize>,
}

impl<'a> Parser<'a> {
    fn new(origin: &'a str) -> Self {
        Parser {
            origin,
            header: Vec::new(),
            chapters: Vec::new(),
            blocks: Vec::new(),
            entries: Vec::with_capacity(100_000),
            listed: Vec::with_capacity(100_000),
            lines: Vec::with_capacity(100_000),
            extensions: Vec::new(),
            in_extension_run: false,
            last_entry: None,
        }
    }

    fn err(&self, line: usize, reason: impl Into<String>) -> TableError {
        TableError::Line {
            origin: self.origin.to_string(),
            line,
            reason: reason.into(),
        }
    }

    fn line(&mut self, n: usize, line: &str) -> Result<(), TableError> {
        let (kind, rest) = line.split_once('\t').unwrap_or((line, ""));
        let extension_run = std::mem::replace(&mut self.in_extension_run, false);
        match kind.as_bytes() {
            b"E" => self.entry(n, rest),
            b"7" => self.expand(n, rest),
            b"X" => {
                self.in_extension_run = true;
                self.extension(n, rest, extension_run)
            }
            b"B" => self.block(n, rest),
            b"C" => self.chapter(n, rest),
            [b'@', ..] => self.header_field(n, &kind[1..], rest),
            _ => Err(self.err(n, format!("unknown record type {kind:?}"))),
        }
    }

    fn extension(&mut self, n: usize, rest: &str, extends: bool) -> Result<(), TableError> {
        let f = fields::<2>(rest)
            .ok_or_else(|| self.err(n, "7th character needs 2 fields: character, text"))?;
        let mut chars = f[0].chars();
        let ch = match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_alphanumeric() => c.to_ascii_uppercase(),
            _ => {
                return Err(self.err(
                    n,
                    format!("7th character {:?} is not one letter or digit", f[0]),
                ))
            }
        };
        let text = nonempty(f[1])
            .ok_or_else(|| self.err(n, format!("text of 7th character {ch} is empty")))?;
        if !extends {
            self.extensions.clear();
        }
        self.extensions.retain(|(c, _)| *c != ch);
        self.extensions.push((ch, text));
        Ok(())
    }

    /// A 7 record: leaf codes made of a base and each listed 7th character.
    fn expand(&mut self, n: usize, rest: &str) -> Result<(), TableError> {
        let f = fields::<2>(rest)
            .ok_or_else(|| self.err(n, "7th-character codes need 2 fields: base, characters"))?;
        let (base, chars) = (f[0], f[1]);
        let Some(of) = self.last_entry else {
            return Err(self.err(n, format!("7th-character codes of {base} follow no entry")));
        };
        let of_code = self.entries[of].code.as_str();
        let padding_ok = base
            .get(of_code.len()..)
            .is_some_and(|pad| pad.bytes().all(|b| b == b'X'));
        if !base.starts_with(of_code) || !padding_ok {
            return Err(self.err(
                n,
                format!("base {base:?} is not entry {of_code} padded with placeholder X"),
            ));
        }
        if chars.is_empty() {
            return Err(self.err(n, format!("no 7th characters for {base}")));
        }
        for ch in chars.chars() {
            let Some(text) = self
                .extensions
                .iter()
                .find(|(c, _)| *c == ch)
                .map(|(_, t)| t)
            else {
                return Err(self.err(
                    n,
                    format!("7th character {ch:?} of {base} is not in the preceding X records"),
                ));
            };
            let mut spelled = String::with_capacity(8);
            spelled.push_str(base);
            spelled.push(ch);
            let code = Code::parse(&spelled).map_err(|source| TableError::Code {
                origin: self.origin.to_string(),
                line: n,
                code: spelled.clone(),
                source,
            })?;
            let base_text = &self.entries[of].description;
            let mut description = String::with_capacity(base_text.len() + 2 + text.len());
            description.push_str(base_text);
            description.push_str(", ");
            description.push_str(text);
            self.push_entry(n, code, true, description);
        }
        Ok(())
    }

    fn header_field(&mut self, n: usize, key: &str, value: &str) -> Result<(), TableError> {
        if !self.chapters.is_empty() {
            return Err(self.err(n, format!("header field @{key} after the first chapter")));
        }
        if key.is_empty() || self.header.iter().any(|(k, _)| k == key) {
            return Err(self.err(n, format!("empty or repeated header field @{key}")));
        }
        self.header.push((key.to_string(), value.to_string()));
        Ok(())
    }

    fn chapter(&mut self, n: usize, rest: &str) -> Result<(), TableError> {
        let f = fields::<5>(rest).ok_or_else(|| {
            self.err(
                n,
                "chapter needs 5 fields: number, roman, first, last, title",
            )
        })?;
        let number = f[0]
            .parse::<u8>()
            .map_err(|_| self.err(n, format!("chapter number {:?} is not 0-255", f[0])))?;
        self.check_range(n, f[2], f[3])?;
        if self.chapters.len() >= u16::MAX as usize {
            return Err(self.err(n, "too many chapters"));
        }
        self.last_entry = None;
        self.chapters.push(Chapter {
            number,
            roman: f[1].to_string(),
            first: f[2].to_string(),
            last: f[3].to_string(),
            title: nonempty(f[4]).ok_or_else(|| self.err(n, "chapter title is empty"))?,
        });
        Ok(())
    }

    fn block(&mut self, n: usize, rest: &str) -> Result<(), TableError> {
        let f = fields::<3>(rest)
            .ok_or_else(|| self.err(n, "block needs 3 fields: first, last, title"))?;
        self.check_range(n, f[0], f[1])?;
        let chapter = self
            .chapters
            .last()
            .ok_or_else(|| self.err(n, "block before the first chapter"))?;
        if !(chapter.first.as_str() <= f[0] && f[1] <= chapter.last.as_str()) {
            return Err(self.err(
                n,
                format!(
                    "block {}-{} lies outside chapter {} ({})",
                    f[0],
                    f[1],
                    chapter.roman,
                    chapter.range()
                ),
            ));
        }
        if self.blocks.len() >= u16::MAX as usize {
            return Err(self.err(n, "too many blocks"));
        }
        let number = chapter.number;
        self.last_entry = None;
        self.blocks.push(Block {
            first: f[0].to_string(),
            last: f[1].to_string(),
            title: nonempty(f[2]).ok_or_else(|| self.err(n, "block title is empty"))?,
            chapter: number,
        });
        Ok(())
    }

    fn entry(&mut self, n: usize, rest: &str) -> Result<(), TableError> {
        let f = fields::<3>(rest)
            .ok_or_else(|| self.err(n, "entry needs 3 fields: code, leaf, description"))?;
        let code = Code::parse(f[0]).map_err(|source| TableError::Code {
            origin: self.origin.to_string(),
            line: n,
            code: f[0].to_string(),
            source,
        })?;
        let leaf = match f[1] {
            "1" => true,
            "0" => false,
            other => {
                return Err(self.err(n, format!("leaf flag of {code} is {other:?}, not 1 or 0")))
            }
        };
        let description =
            nonempty(f[2]).ok_or_else(|| self.err(n, format!("description of {code} is empty")))?;
        if self.blocks.is_empty() {
            return Err(self.err(n, format!("entry {code} before the first block")));
        }
        self.last_entry = Some(self.entries.len());
        self.push_entry(n, code, leaf, description);
        Ok(())
    }

    /// Adds an entry to the current chapter and block (callers check that a block exists).
    fn push_entry(&mut self, n: usize, code: Code, leaf: bool, description: String) {
        // Both indices fit: chapter and block pushes stop at u16::MAX.
        let listing = (
            (self.chapters.len() - 1) as u16,
            (self.blocks.len() - 1) as u16,
        );
        self.entries.push(Entry {
            code,
            description,
            leaf,
        });
        self.listed.push(listing);
        self.lines.push(u32::try_from(n).unwrap_or(u32::MAX));
    }

    fn check_range(&self, n: usize, first: &str, last: &str) -> Result<(), TableError> {
        let category = |s: &str| s.len() == 3 && s.bytes().all(|b| b.is_ascii_alphanumeric());
        if !category(first) || !category(last) || first > last {
            return Err(self.err(
                n,
                format!("range {first:?}-{last:?} is not two ordered 3-character categories"),
            ));
        }
        Ok(())
    }

    fn finish(self) -> Result<Parsed, TableError> {
        let take = |key: &'static str| {
            self.header
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let require = |key: &'static str| {
            take(key).ok_or_else(|| TableError::MissingHeader {
                origin: self.origin.to_string(),
                key,
            })
        };
        let source_sha256 = require("source_sha256")?;
        if source_sha256.len() != 64 || !source_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TableError::Header {
                origin: self.origin.to_string(),
                key: "source_sha256",
                reason: format!("{source_sha256:?} is not 64 hex digits"),
            });
        }
        const KNOWN: [&str; 6] = [
            "name",
            "version",
            "source",
            "source_sha256",
            "generated",
            "generator",
        ];
        let edition = Edition {
            name: require("name")?,
            version: require("version")?,
            source: require("source")?,
            source_sha256,
            generated: take("generated"),
            generator: take("generator"),
            extra: self
                .header
                .iter()
                .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
                .cloned()
                .collect(),
        };
        if self.entries.is_empty() {
            return Err(TableError::Empty {
                origin: self.origin.to_string(),
            });
        }
        Ok(Parsed {
            edition,
            chapters: self.chapters,
            blocks: self.blocks,
            entries: self.entries,
            listed: self.listed,
            lines: self.lines,
        })
    }
}

/// Splits `rest` into exactly N tab-separated fields; the last one keeps any further tabs.
fn fields<const N: usize>(rest: &str) -> Option<[&str; N]> {
    let mut out = [""; N];
    let mut it = rest.splitn(N, '\t');
    for slot in out.iter_mut() {
        *slot = it.next()?;
    }
    Some(out)
}

fn nonempty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}
