//! A tiny tokenizer and deterministic fake models for the search tests.

use std::collections::HashMap;

use infer::{CodeTrie, InferError, Logits, Result, StepModel, TextCodec};

/// Special tokens: split out before anything else, dropped by `decode`.
pub const SPECIALS: &[&str] = &["<bos>", "<eot>", "<asst>", "<user>"];
pub const EOT: u32 = 1;

/// Greedy longest-match tokenizer over specials, every printable ASCII character and newline,
/// plus the given multi-character merges. Like BPE, the tokens of a string depend on its
/// neighbours (a merge can span a boundary), which is what the trie builder must respect.
pub struct TinyTokenizer {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
    longest: usize,
}

impl TinyTokenizer {
    pub fn new(merges: &[&str]) -> TinyTokenizer {
        let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        tokens.push("\n".into());
        tokens.extend((b' '..=b'~').map(|b| (b as char).to_string()));
        for m in merges {
            if !tokens.iter().any(|t| t == m) {
                tokens.push(m.to_string());
            }
        }
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let longest = tokens.iter().map(String::len).max().unwrap();
        TinyTokenizer {
            tokens,
            ids,
            longest,
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let mut rest = text;
        while !rest.is_empty() {
            let (len, id) = (1..=self.longest.min(rest.len()))
                .rev()
                .filter(|&n| rest.is_char_boundary(n))
                .find_map(|n| {
                    let piece = &rest[..n];
                    let id = *self.ids.get(piece)?;
                    (id as usize >= SPECIALS.len()).then_some((n, id))
                })
                .ok_or_else(|| InferError::Tokenizer {
                    op: "encode",
                    message: "character outside the tiny vocabulary".into(),
                })?;
            out.push(id);
            rest = &rest[len..];
        }
        Ok(())
    }
}

impl TextCodec for TinyTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        let mut rest = text;
        loop {
            let next = SPECIALS
                .iter()
                .enumerate()
                .filter_map(|(id, s)| rest.find(s).map(|at| (at, id, s.len())))
                .min();
            match next {
                Some((at, id, len)) => {
                    self.encode_plain(&rest[..at], &mut out)?;
                    out.push(id as u32);
                    rest = &rest[at + len..];
                }
                None => {
                    self.encode_plain(rest, &mut out)?;
                    return Ok(out);
                }
            }
        }
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        Ok(ids
            .iter()
            .filter(|&&id| id as usize >= SPECIALS.len())
            .map(|&id| self.tokens[id as usize].as_str())
            .collect())
    }
}

/// A deterministic language model: the logits after a history are a hash of (seed, whole
/// history, token), scaled to `[-spread, spread]`, plus `bias` on chosen tokens. Because every
/// logit depends on the entire history, a beam whose cache row is mixed up gets different scores
/// than the oracle, so cache handling errors cannot pass unnoticed.
#[derive(Debug, Clone)]
pub struct HashModel {
    pub vocab: usize,
    pub seed: u64,
    pub spread: f32,
    /// `(token, min_history_len, bias)`: `bias` is added to `token`'s logit once the history
    /// (prompt + generated) holds at least `min_history_len` ids, e.g. to make EOS likely.
    pub biases: Vec<(u32, usize, f32)>,
    /// Raises the tokens a trie allows after the prompt, so that answers hold most of the mass.
    pub guide: Option<Guide>,
    /// Counters of the work requested.
    pub prefill_calls: usize,
    pub prefill_tokens: usize,
    pub step_calls: usize,
    pub step_tokens: usize,
    /// When set, `step` returns one row too few (to test shape checks).
    pub drop_a_row: bool,
    /// When set, `step` returns NaN for this token id.
    pub nan_token: Option<u32>,
}

impl HashModel {
    pub fn new(vocab: usize, seed: u64) -> HashModel {
        HashModel {
            vocab,
            seed,
            spread: 4.0,
            biases: Vec::new(),
            guide: None,
            prefill_calls: 0,
            prefill_tokens: 0,
            step_calls: 0,
            step_tokens: 0,
            drop_a_row: false,
            nan_token: None,
        }
    }

    pub fn logits_after(&self, history: &[u32]) -> Vec<f32> {
        let mut h = splitmix(self.seed);
        for &t in history {
            h = splitmix(h ^ (t as u64 + 1));
        }
        let guided: Vec<u32> = self
            .guide
            .as_ref()
            .filter(|g| history.len() >= g.prompt_len)
            .and_then(|g| {
                let node = g.trie.walk(&history[g.prompt_len..])?;
                Some(g.trie.children(node).map(|(t, _)| t).collect())
            })
            .unwrap_or_default();
        let guide_bias = self.guide.as_ref().map_or(0.0, |g| g.bias);
        (0..self.vocab)
            .map(|t| {
                let x = splitmix(h ^ ((t as u64) << 32 | 0xABCD));
                let unit = (x >> 11) as f32 / (1u64 << 53) as f32;
                let mut logit = (2.0 * unit - 1.0) * self.spread;
                for &(tok, min_len, bias) in &self.biases {
                    if tok as usize == t && history.len() >= min_len {
                        logit += bias;
                    }
                }
                if guided.contains(&(t as u32)) {
                    logit += guide_bias;
                }
                logit
            })
            .collect()
    }

    fn rows(&self, histories: &[Vec<u32>]) -> Result<Logits> {
        Logits::from_rows(
            self.vocab,
            histories.iter().map(|h| self.logits_after(h)).collect(),
        )
    }
}

/// See [`HashModel::guide`].
#[derive(Debug, Clone)]
pub struct Guide {
    pub trie: CodeTrie,
    pub prompt_len: usize,
    pub bias: f32,
}

impl StepModel for HashModel {
    type Cache = Vec<Vec<u32>>;

    fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn prefill(&mut self, prompts: &[Vec<u32>]) -> Result<(Self::Cache, Logits)> {
        assert!(prompts.iter().all(|p| !p.is_empty()), "empty prompt");
        self.prefill_calls += 1;
        self.prefill_tokens += prompts.iter().map(Vec::len).sum::<usize>();
        let cache = prompts.to_vec();
        let logits = self.rows(&cache)?;
        Ok((cache, logits))
    }

    fn select(&mut self, cache: Self::Cache, rows: &[usize]) -> Result<Self::Cache> {
        Ok(rows.iter().map(|&r| cache[r].clone()).collect())
    }

    fn step(&mut self, cache: &mut Self::Cache, tokens: &[u32]) -> Result<Logits> {
        assert_eq!(cache.len(), tokens.len(), "one token per cache row");
        self.step_calls += 1;
        self.step_tokens += tokens.len();
        for (row, &t) in cache.iter_mut().zip(tokens) {
            assert!((t as usize) < self.vocab);
            row.push(t);
        }
        let mut logits = self.rows(cache)?;
        if let Some(t) = self.nan_token {
            let rows = (0..cache.len())
                .map(|i| {
                    let mut row = logits.row(i).to_vec();
                    row[t as usize] = f32::NAN;
                    row
                })
                .collect();
            logits = Logits::from_rows(self.vocab, rows)?;
        }
        if self.drop_a_row && !cache.is_empty() {
            let vocab = self.vocab;
            let rows = (0..cache.len() - 1)
                .map(|i| logits.row(i).to_vec())
                .collect();
            logits = Logits::from_rows(vocab, rows)?;
        }
        Ok(logits)
    }
}

/// A model that writes a fixed answer: after a prompt of `prompt_len` ids, the next token of
/// `script` is certain (logit 30 against 0), and end-of-turn once the script is spent. It stands
/// for a finetuned model stuck in a loop, whatever the search around it does.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub vocab: usize,
    pub prompt_len: usize,
    pub script: Vec<u32>,
}

impl Scripted {
    fn row(&self, history: &[u32]) -> Vec<f32> {
        let at = history.len().saturating_sub(self.prompt_len);
        let next = self.script.get(at).copied().unwrap_or(EOT);
        let mut row = vec![0.0; self.vocab];
        row[next as usize] = 30.0;
        row
    }
}

impl StepModel for Scripted {
    type Cache = Vec<Vec<u32>>;

    fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn prefill(&mut self, prompts: &[Vec<u32>]) -> Result<(Self::Cache, Logits)> {
        let rows = prompts.iter().map(|p| self.row(p)).collect();
        Ok((prompts.to_vec(), Logits::from_rows(self.vocab, rows)?))
    }

    fn select(&mut self, cache: Self::Cache, rows: &[usize]) -> Result<Self::Cache> {
        Ok(rows.iter().map(|&r| cache[r].clone()).collect())
    }

    fn step(&mut self, cache: &mut Self::Cache, tokens: &[u32]) -> Result<Logits> {
        for (row, &t) in cache.iter_mut().zip(tokens) {
            row.push(t);
        }
        let rows = cache.iter().map(|h| self.row(h)).collect();
        Logits::from_rows(self.vocab, rows)
    }
}

pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
