//! Codes seen at the four levels of comparison, interned to small integers once per distinct spelling.
//!
//! Scoring compares label ids, never strings, and asks the code table about each distinct code only
//! once (its block lookup is a scan), which is what makes 100,000 predictions cheap.

use std::collections::HashMap;

use icd::{Code, CodeTable};

/// The granularity at which a predicted code is compared with the gold codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Code = 0,
    Category = 1,
    Block = 2,
    Chapter = 3,
}

impl Level {
    pub(crate) const ALL: [Level; 4] = [Level::Code, Level::Category, Level::Block, Level::Chapter];

    /// Suffix of the headline names (`accuracy_category`); empty for the exact code.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Level::Code => "",
            Level::Category => "_category",
            Level::Block => "_block",
            Level::Chapter => "_chapter",
        }
    }
}

/// What scoring needs to know about one spelling of a code (gold or candidate).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CodeInfo {
    /// Label id at each [`Level`], indexed by `Level as usize`.
    pub keys: [u32; 4],
    /// True chapter number, `None` when the table cannot place it or it is malformed.
    pub chapter: Option<u8>,
    pub well_formed: bool,
    pub valid: bool,
    pub leaf: bool,
    /// Occurrences in the training split (0 when never seen or malformed).
    pub train_count: usize,
}

/// Chapter titles for the breakdown, keyed by number.
#[derive(Debug, Clone)]
pub(crate) struct ChapterMeta {
    pub roman: String,
    pub label: String,
}

/// Interned labels per level plus the per-spelling cache.
pub(crate) struct LabelSpace<'t> {
    table: &'t CodeTable,
    train_counts: HashMap<String, usize>,
    interners: [Interner; 4],
    cache: HashMap<String, CodeInfo>,
    pub chapters: HashMap<u8, ChapterMeta>,
}

impl<'t> LabelSpace<'t> {
    /// `train_counts` keys may be in any spelling (`J06.9`, `j069`); they are normalised here, and
    /// counts of spellings of the same code are added.
    pub fn new(table: &'t CodeTable, train_counts: &HashMap<String, usize>) -> LabelSpace<'t> {
        let mut normalised: HashMap<String, usize> = HashMap::with_capacity(train_counts.len());
        for (raw, count) in train_counts {
            let key = Code::parse(raw)
                .map(|c| c.as_str().to_string())
                .unwrap_or_else(|_| raw.clone());
            *normalised.entry(key).or_default() += count;
        }
        LabelSpace {
            table,
            train_counts: normalised,
            interners: Default::default(),
            cache: HashMap::new(),
            chapters: HashMap::new(),
        }
    }

    /// Information about one spelling, computed on first sight.
    pub fn info(&mut self, raw: &str) -> CodeInfo {
        if let Some(info) = self.cache.get(raw) {
            return *info;
        }
        let info = self.compute(raw);
        self.cache.insert(raw.to_string(), info);
        info
    }

    /// Number of distinct labels at a level (ids are `0..count`).
    pub fn label_count(&self, level: Level) -> usize {
        self.interners[level as usize].len()
    }

    fn compute(&mut self, raw: &str) -> CodeInfo {
        let Ok(code) = Code::parse(raw) else {
            // A malformed candidate is its own label at every level, so it matches nothing and costs
            // precision; identical malformed strings share the label, as they would in scikit-learn.
            let label = format!("!{raw}");
            let keys = [0, 1, 2, 3].map(|l| self.interners[l].id(&label));
            return CodeInfo {
                keys,
                chapter: None,
                well_formed: false,
                valid: false,
                leaf: false,
                train_count: 0,
            };
        };
        let category = code.category().to_string();
        // A code outside every block or chapter cannot share one with anything: its own label.
        let block = match self.table.block(&code) {
            Some(b) => b.range(),
            None => format!("?{category}"),
        };
        let chapter = self.table.chapter(&code);
        let chapter_label = match chapter {
            Some(c) => {
                self.chapters
                    .entry(c.number)
                    .or_insert_with(|| ChapterMeta {
                        roman: c.roman.clone(),
                        label: format!("{} {} ({})", c.roman, c.title, c.range()),
                    });
                format!("{}", c.number)
            }
            None => format!("?{category}"),
        };
        let keys = [
            self.interners[0].id(code.as_str()),
            self.interners[1].id(&category),
            self.interners[2].id(&block),
            self.interners[3].id(&chapter_label),
        ];
        CodeInfo {
            keys,
            chapter: chapter.map(|c| c.number),
            well_formed: true,
            valid: self.table.is_valid(&code),
            leaf: self.table.is_leaf(&code),
            train_count: self.train_counts.get(code.as_str()).copied().unwrap_or(0),
        }
    }
}

/// Dense ids for label names, in order of first sight, so that per-label counts live in flat
/// vectors instead of maps keyed by strings.
#[derive(Default)]
pub(crate) struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    /// The id of `name`, new when it was not seen before.
    pub(crate) fn id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(name.to_string(), id);
        self.names.push(name.to_string());
        id
    }

    /// How many distinct names were seen.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}
