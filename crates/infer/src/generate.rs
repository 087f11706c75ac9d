//! Unconstrained generation (greedy or sampled) returning raw text for the lenient parser.
//!
//! All prompts are prefilled in one batch and stepped together; a finished sequence leaves the
//! batch (its cache row is dropped), so no compute goes to padding.
//!
//! Besides stop ids, stop strings and the token budget, an answer ends where it starts repeating
//! itself: once the text is a code list and completes a code it already listed
//! ([`prompt::extract::repeat_start`]; the rule, shared with training targets and extraction, is
//! "Each code once" in [`prompt::extract`]).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::codec::TextCodec;
use crate::error::{InferError, Result};
use crate::model::{token_logprob, StepModel};

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoding {
    /// The most probable token (lowest id on ties).
    Greedy,
    /// A draw from `softmax(logits / temperature)` restricted to the smallest set of most probable
    /// tokens whose probability reaches `top_p` (nucleus sampling; `top_p = 1` keeps all).
    /// Each prompt draws from its own generator seeded by `seed` and the prompt's token ids, so a
    /// sample does not depend on which other prompts share its batch.
    Sample {
        temperature: f32,
        top_p: f32,
        seed: u64,
    },
}

/// Settings of [`generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    pub decoding: Decoding,
    /// Generation stops after this many tokens.
    pub max_new_tokens: usize,
    /// Ids that end generation (the tokenizer's EOS and end-of-turn ids).
    pub stop_ids: Vec<u32>,
    /// Texts that end generation; the returned text is cut before the first one.
    pub stop_strings: Vec<String>,
}

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A stop id was generated.
    StopId,
    /// The text contains a stop string.
    StopString,
    /// `max_new_tokens` reached.
    MaxTokens,
    /// The answer, a code list, completed a code it had already listed; the text ends before it.
    RepeatedCode,
}

/// One generated answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Every generated id, the final stop id included (and, after a repeat, the repeated code).
    pub tokens: Vec<u32>,
    /// Decoded text without special tokens and without the stop id, cut before a stop string or
    /// before a repeated code and its separator.
    pub text: String,
    pub stop: StopReason,
    /// Sum of the generated tokens' log-probabilities under the model (untempered, full
    /// vocabulary).
    pub logprob: f64,
}

struct Running {
    prompt: usize,
    tokens: Vec<u32>,
    logprob: f64,
    rng: Option<ChaCha8Rng>,
}

/// Generates a continuation of each prompt.
pub fn generate<M: StepModel, C: TextCodec + ?Sized>(
    model: &mut M,
    codec: &C,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
) -> Result<Vec<Generation>> {
    validate(opts)?;
    let mut results: Vec<Option<Generation>> = vec![None; prompts.len()];
    if opts.max_new_tokens == 0 {
        return Ok(prompts
            .iter()
            .map(|_| Generation {
                tokens: Vec::new(),
                text: String::new(),
                stop: StopReason::MaxTokens,
                logprob: 0.0,
            })
            .collect());
    }
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    let vocab = model.vocab_size();
    let (mut cache, mut logits) = model.prefill(prompts)?;
    logits.check("prefill", prompts.len(), vocab)?;
    let mut live: Vec<Running> = prompts
        .iter()
        .enumerate()
        .map(|(prompt, ids)| Running {
            prompt,
            tokens: Vec::new(),
            logprob: 0.0,
            rng: match opts.decoding {
                Decoding::Greedy => None,
                Decoding::Sample { seed, .. } => {
                    Some(ChaCha8Rng::seed_from_u64(prompt_seed(seed, ids)))
                }
            },
        })
        .collect();

    loop {
        let mut keep = Vec::new();
        let mut next = Vec::new();
        for (row, mut run) in live.into_iter().enumerate() {
            let scores = logits.row(row);
            let token = choose(scores, opts.decoding, run.rng.as_mut());
            run.logprob += token_logprob(scores, token);
            run.tokens.push(token);
            match finish(codec, &run, opts)? {
                Some(done) => results[run.prompt] = Some(done),
                None => {
                    keep.push(row);
                    next.push(run);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        let tokens: Vec<u32> = next
            .iter()
            .map(|r| *r.tokens.last().expect("one token"))
            .collect();
        if keep.len() != logits.rows() {
            cache = model.select(cache, &keep)?;
        }
        logits = model.step(&mut cache, &tokens)?;
        logits.check("step", next.len(), vocab)?;
        live = next;
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every prompt finishes"))
        .collect())
}

fn validate(opts: &GenerateOptions) -> Result<()> {
    if let Decoding::Sample {
        temperature, top_p, ..
    } = opts.decoding
    {
        if !(temperature > 0.0 && temperature.is_finite()) {
            return Err(InferError::Option {
                option: "temperature",
                value: temperature.to_string(),
                reason: "must be positive and finite (use greedy decoding for 0)",
            });
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(InferError::Option {
                option: "top_p",
                value: top_p.to_string(),
                reason: "must be in (0, 1]",
            });
        }
    }
    if opts.stop_strings.iter().any(String::is_empty) {
        return Err(InferError::Option {
            option: "stop_strings",
            value: "\"\"".into(),
            reason: "an empty stop string would stop at once",
        });
    }
    Ok(())
}

/// The finished generation if `run` must stop now.
fn finish<C: TextCodec + ?Sized>(
    codec: &C,
    run: &Running,
    opts: &GenerateOptions,
) -> Result<Option<Generation>> {
    let last = *run.tokens.last().expect("one token");
    let done = |text: String, stop| Generation {
        tokens: run.tokens.clone(),
        text,
        stop,
        logprob: run.logprob,
    };
    if opts.stop_ids.contains(&last) {
        let text = codec.decode(&run.tokens[..run.tokens.len() - 1])?;
        return Ok(Some(done(
            cut_at_stop_string(text, opts).0,
            StopReason::StopId,
        )));
    }
    let (text, cut) = cut_at_stop_string(codec.decode(&run.tokens)?, opts);
    if cut {
        return Ok(Some(done(text, StopReason::StopString)));
    }
    if let Some(at) = prompt::extract::repeat_start(&text) {
        let answer = prompt::extract::cut_before_repeat(&text, at).to_string();
        return Ok(Some(done(answer, StopReason::RepeatedCode)));
    }
    if run.tokens.len() >= opts.max_new_tokens {
        return Ok(Some(done(text, StopReason::MaxTokens)));
    }
    Ok(None)
}

/// `text` cut before the earliest stop string, and whether it was cut.
fn cut_at_stop_string(mut text: String, opts: &GenerateOptions) -> (String, bool) {
    match opts
        .stop_strings
        .iter()
        .filter_map(|s| text.find(s.as_str()))
        .min()
    {
        Some(at) => {
            text.truncate(at);
            (text, true)
        }
        None => (text, false),
    }
}

fn choose(scores: &[f32], decoding: Decoding, rng: Option<&mut ChaCha8Rng>) -> u32 {
    match (decoding, rng) {
        (
            Decoding::Sample {
                temperature, top_p, ..
            },
            Some(rng),
        ) => sample(scores, temperature, top_p, rng),
        _ => argmax(scores),
    }
}

/// Index of the largest score, lowest index on ties.
pub(crate) fn argmax(scores: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best as u32
}

fn sample(scores: &[f32], temperature: f32, top_p: f32, rng: &mut ChaCha8Rng) -> u32 {
    let t = temperature as f64;
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut probs: Vec<(u32, f64)> = scores
        .iter()
        .enumerate()
        .map(|(i, &s)| (i as u32, ((s as f64 - max) / t).exp()))
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    if top_p < 1.0 {
        // Most probable first (lowest id on ties), then the shortest prefix reaching top_p.
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut mass = 0.0;
        let mut keep = 0;
        for p in &probs {
            mass += p.1 / total;
            keep += 1;
            if mass >= top_p as f64 {
                break;
            }
        }
        probs.truncate(keep);
    }
    let kept: f64 = probs.iter().map(|p| p.1).sum();
    let mut draw = rng.random::<f64>() * kept;
    for &(id, p) in &probs {
        if draw < p {
            return id;
        }
        draw -= p;
    }
    // Rounding left a sliver past the last bucket: that bucket is the draw.
    probs.iter().rev().find(|p| p.1 > 0.0).map_or(0, |p| p.0)
}

/// A seed from the run's seed and the prompt's ids (splitmix64 steps), so each prompt's draws
/// depend on nothing else.
fn prompt_seed(seed: u64, prompt: &[u32]) -> u64 {
    let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
    for &t in prompt {
        h = splitmix(h ^ t as u64);
    }
    splitmix(h)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
