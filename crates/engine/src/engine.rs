//! A loaded model with its tokenizer and chat prompt, ready to suggest codes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};
use icd::{Code, CodeTable};
use infer::{BeamOptions, CodeTrie, Decoding, EvalItem, GenerateOptions, TrieSpec};
use lm::{LoadOptions, Model};
use prompt::chat::{ChatPrompt, ChatTemplate};
use serde::Serialize;
use tokenize::Tokenizer;
use types::{Example, Prediction};

use crate::error::{EngineError, Result};
use crate::step::LmStep;

/// How to load a model and what to ask it.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// System prompt; `None` leaves the template's own default.
    pub system: Option<String>,
    /// Instruction placed before the dialogue (see `prompt::chat::user_message`).
    pub instruction: String,
    /// PEFT LoRA adapter folder, merged into the base weights after loading.
    pub adapter: Option<PathBuf>,
    /// f32 on CPU (see CANDLE.md: bf16 is slower there).
    pub dtype: DType,
    pub device: Device,
    /// Quantise the projections and LM head at load (zero-shot models; an adapter cannot be merged
    /// into quantised weights).
    pub quantization: Option<lm::Quantization>,
}

impl EngineOptions {
    /// CPU, f32, the prompt of a config's `[prompt]` section (an empty system prompt means the
    /// template's default).
    pub fn cpu(system: &str, instruction: &str) -> EngineOptions {
        EngineOptions {
            system: (!system.trim().is_empty()).then(|| system.to_string()),
            instruction: instruction.to_string(),
            adapter: None,
            dtype: DType::F32,
            device: Device::Cpu,
            quantization: None,
        }
    }
}

/// Which codes constrained decoding may produce.
#[derive(Debug, Clone)]
pub enum TriePlan {
    /// Every leaf (billable code) of the code table.
    Leaves,
    /// A given label set (e.g. the training split's codes).
    Labels(Vec<Code>),
}

/// One ranked code for `icdtune predict`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Suggestion {
    /// Dotted code, `J06.9`.
    pub code: String,
    pub description: Option<String>,
    /// Sequence log-probability of the answer (natural log), end-of-turn token included.
    pub logprob: f64,
    /// `exp(logprob)`.
    pub probability: f64,
    /// Roman numeral of the code's ICD-10 chapter.
    pub chapter: Option<String>,
    pub chapter_title: Option<String>,
}

/// Model, tokenizer and prompt of one model spec.
pub struct Engine {
    spec: String,
    path: PathBuf,
    model: Model,
    tokenizer: Tokenizer,
    chat: ChatPrompt,
    /// Tail of the generation prompt from its last special token, e.g. `<|im_start|>assistant\n`.
    context: String,
    /// What the template writes after the answer to end the turn, e.g. `<|im_end|>`.
    end_of_turn: String,
}

/// Stands in for a dialogue when the prompt's shape is probed (never a real one, so nothing
/// about a patient leaks into the anchors).
const PROBE_DIALOGUE: &str = "Doctor: How can I help? Patient: I have a cough.";

impl Engine {
    /// Loads the model at `path` (a folder or `.gguf`, see [`crate::resolve_model`]); `spec` is
    /// the name it is reported under.
    pub fn load(spec: &str, path: &Path, opts: &EngineOptions) -> Result<Engine> {
        let start = Instant::now();
        let mut model = Model::load(
            path,
            &LoadOptions {
                dtype: opts.dtype,
                device: opts.device.clone(),
                quantization: opts.quantization,
            },
        )?;
        if let Some(dir) = &opts.adapter {
            let adapter = lm::adapter::load(dir, &opts.device)?;
            lm::adapter::apply(&mut model, &adapter)?;
            // Merged weights make inference cost the same as the base model.
            model.merge_lora()?;
        }
        let tokenizer = Tokenizer::load(path)?;
        let template = tokenizer
            .chat_template()
            .ok_or(prompt::chat::ChatError::NoTemplate)?;
        let end_of_turn_texts: Vec<String> = tokenizer
            .eos_ids()
            .iter()
            .filter_map(|&id| tokenizer.id_to_token(id))
            .collect();
        if end_of_turn_texts.is_empty() {
            return Err(EngineError::NoEndOfTurn {
                spec: spec.to_string(),
            });
        }
        let chat = ChatPrompt::new(
            ChatTemplate::new(template)?,
            tokenizer.bos_token(),
            tokenizer.eos_token(),
            end_of_turn_texts,
            opts.system.clone(),
            opts.instruction.clone(),
        );
        let (context, end_of_turn) = anchors(spec, &chat, &tokenizer)?;
        tracing::info!(
            spec,
            layers = model.config().num_layers,
            vocab = model.config().vocab_size,
            load_ms = start.elapsed().as_millis() as u64,
            "model loaded"
        );
        Ok(Engine {
            spec: spec.to_string(),
            path: path.to_path_buf(),
            model,
            tokenizer,
            chat,
            context,
            end_of_turn,
        })
    }

    pub fn spec(&self) -> &str {
        &self.spec
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The trie's anchors: generation-prompt tail and end-of-turn text.
    pub fn trie_spec(&self) -> TrieSpec<'_> {
        TrieSpec {
            context: &self.context,
            end_of_turn: &self.end_of_turn,
        }
    }

    /// Token ids of the inference prompt for `dialogue` (BOS added only when the template did not
    /// write it).
    pub fn prompt_ids(&self, dialogue: &str) -> Result<Vec<u32>> {
        let rendered = self.chat.inference_prompt(dialogue)?;
        Ok(self
            .tokenizer
            .encode(&rendered.text, !rendered.starts_with_bos)?)
    }

    /// The answer trie for `plan` in this model's token ids.
    pub fn build_trie(&self, plan: &TriePlan, table: &CodeTable) -> Result<CodeTrie> {
        let start = Instant::now();
        let codes: Vec<Code> = match plan {
            TriePlan::Leaves => table.leaves().map(|e| e.code.clone()).collect(),
            TriePlan::Labels(codes) => {
                if codes.is_empty() {
                    return Err(EngineError::Labels("the label set is empty".into()));
                }
                codes.clone()
            }
        };
        let trie = CodeTrie::build(codes, &self.tokenizer, &self.trie_spec())?;
        tracing::info!(
            codes = trie.len(),
            nodes = trie.node_count(),
            build_ms = start.elapsed().as_millis() as u64,
            "code trie built"
        );
        Ok(trie)
    }

    /// The `k` best codes of `trie` for `dialogue`, with the prompt's token count.
    pub fn suggest(
        &self,
        trie: &CodeTrie,
        dialogue: &str,
        k: usize,
        table: &CodeTable,
    ) -> Result<(Vec<Suggestion>, usize)> {
        let ids = self.prompt_ids(dialogue)?;
        let mut step = LmStep::new(&self.model);
        let candidates = infer::suggest(&mut step, trie, &ids, &BeamOptions::top_k(k))?;
        let suggestions = candidates
            .into_iter()
            .map(|c| describe(&c.code, c.logprob, table))
            .collect();
        Ok((suggestions, ids.len()))
    }

    /// Unconstrained greedy answer for `dialogue` (raw text, for the lenient parser).
    pub fn generate(&self, dialogue: &str, max_new_tokens: usize) -> Result<infer::Generation> {
        let ids = self.prompt_ids(dialogue)?;
        let mut step = LmStep::new(&self.model);
        let mut out = infer::generate(
            &mut step,
            &self.tokenizer,
            &[ids],
            &self.greedy_options(max_new_tokens),
        )?;
        Ok(out.remove(0))
    }

    fn greedy_options(&self, max_new_tokens: usize) -> GenerateOptions {
        GenerateOptions {
            decoding: Decoding::Greedy,
            max_new_tokens,
            stop_ids: self.tokenizer.eos_ids().to_vec(),
            stop_strings: Vec::new(),
        }
    }

    /// Predictions for `examples`: constrained top-`k` over `trie`, or unconstrained greedy
    /// generation of at most `max_new_tokens` when `trie` is `None`.
    ///
    /// Constrained decoding runs [`CONSTRAINED_BATCH`] examples at a time: each prompt is
    /// prefilled alone (no padding work), then all their beams step together, so every decode
    /// step reads the weights once for the whole batch; an example's latency is its share of
    /// the batch's time. Generation runs one example at a time, so each latency is its own.
    pub fn evaluate(
        &self,
        examples: &[Example],
        trie: Option<&CodeTrie>,
        k: usize,
        max_new_tokens: usize,
    ) -> Result<Vec<Prediction>> {
        let items = examples
            .iter()
            .map(|e| {
                Ok(EvalItem {
                    id: e.id.clone(),
                    gold: e.codes.iter().map(|c| c.as_str().to_string()).collect(),
                    prompt_ids: self.prompt_ids(&e.text)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut step = LmStep::new(&self.model);
        let batch = if trie.is_some() { CONSTRAINED_BATCH } else { 1 };
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(batch) {
            let mut p = match trie {
                Some(trie) => infer::evaluate_constrained(
                    &mut step,
                    trie,
                    chunk,
                    &BeamOptions::top_k(k),
                    batch,
                )?,
                None => infer::evaluate_generative(
                    &mut step,
                    &self.tokenizer,
                    chunk,
                    &self.greedy_options(max_new_tokens),
                    1,
                )?,
            };
            out.append(&mut p);
            tracing::info!(done = out.len(), of = items.len(), "predicted");
        }
        Ok(out)
    }
}

/// Examples whose beams [`Engine::evaluate`] decodes together. On a CPU a decode step costs
/// about one pass over the weights whatever the number of rows, so batching divides the decode
/// cost; 8 prompts of 5 beams keep a step's matrices small enough to stay memory-bound.
const CONSTRAINED_BATCH: usize = 8;

/// A ranked code with its table description and chapter.
pub fn describe(code: &str, logprob: f64, table: &CodeTable) -> Suggestion {
    let parsed = Code::parse(code).ok();
    let chapter = parsed.as_ref().and_then(|c| table.chapter(c));
    Suggestion {
        code: parsed
            .as_ref()
            .map_or_else(|| code.to_string(), Code::dotted),
        description: parsed
            .as_ref()
            .and_then(|c| table.description(c))
            .map(str::to_string),
        logprob,
        probability: logprob.exp(),
        chapter: chapter.map(|c| c.roman.clone()),
        chapter_title: chapter.map(|c| c.title.clone()),
    }
}

/// The generation prompt's tail from its last special token, and the end-of-turn text the
/// template writes after an answer, both read off renders of a placeholder dialogue.
fn anchors(spec: &str, chat: &ChatPrompt, tokenizer: &Tokenizer) -> Result<(String, String)> {
    let probe = Code::parse("J06.9").expect("valid code");
    let training = chat.training_text(PROBE_DIALOGUE, std::slice::from_ref(&probe))?;
    let prompt = training.prompt.text;
    let specials: Vec<String> = tokenizer
        .inner()
        .get_added_tokens_decoder()
        .values()
        .filter(|t| t.special && !t.content.is_empty())
        .map(|t| t.content.clone())
        .collect();
    let at = specials
        .iter()
        .filter_map(|s| prompt.rfind(s.as_str()))
        .max()
        .ok_or_else(|| EngineError::NoPromptAnchor {
            spec: spec.to_string(),
        })?;
    let answer = prompt::chat::answer_text(std::slice::from_ref(&probe));
    let completion = training.completion;
    let answer_at = completion
        .find(&answer)
        .ok_or(prompt::chat::ChatError::AnswerMissing)?;
    // Text the template puts before the answer belongs to the context the answer continues.
    let context = format!("{}{}", &prompt[at..], &completion[..answer_at]);
    let end_of_turn = completion[answer_at + answer.len()..].to_string();
    Ok((context, end_of_turn))
}
