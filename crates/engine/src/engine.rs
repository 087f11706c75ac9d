//! A loaded model with its tokenizer and chat prompt, ready to suggest codes.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use candle_core::{DType, Device};
use icd::{Code, CodeTable};
use infer::{CodeTrie, Decoding, GenerateOptions, TrieSpec};
use lm::{LoadOptions, Model};
use prompt::chat::ChatPrompt;
use prompt::fit::{ContextPolicy, TruncateSide};
use serde::Serialize;
use tokenize::Tokenizer;
use types::{Example, Prediction};

use crate::error::{EngineError, Result};
use crate::prefix::{common_prefix, SharedPrefix};
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
            system: crate::chat::system_prompt(system),
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
    /// How prompts are fitted to the context (see [`crate::fitting`]).
    pub(crate) policy: ContextPolicy,
    /// Whether prompts continue from a prefix prefilled once (see [`crate::prefix`]).
    share_prefix: bool,
    /// The template's start (system prompt, instruction), prefilled on first use.
    template_prefix: OnceLock<Option<SharedPrefix>>,
}

/// Stands in for a dialogue when the prompt's shape is probed (never a real one, so nothing
/// about a patient leaks into the anchors).
const PROBE_DIALOGUE: &str = "Doctor: How can I help? Patient: I have a cough.";

/// A second placeholder starting differently from [`PROBE_DIALOGUE`]: the token prefix the two
/// prompts share is the template's own start.
const PROBE_OTHER: &str = "Patient: My knee hurts.";

impl Engine {
    /// Loads the model at `path` (a folder or `.gguf`, see [`crate::resolve_model`]); `spec` is
    /// the name it is reported under.
    pub fn load(spec: &str, path: &Path, opts: &EngineOptions) -> Result<Engine> {
        let start = Instant::now();
        check_gguf(path)?;
        let mut model = Model::load(
            path,
            &LoadOptions {
                dtype: opts.dtype,
                device: opts.device.clone(),
                quantization: opts.quantization,
            },
        )
        .map_err(|e| model_file_error(path, e))?;
        if let Some(dir) = &opts.adapter {
            let adapter = lm::adapter::load(dir, &opts.device)?;
            lm::adapter::apply(&mut model, &adapter)?;
            // Merged weights make inference cost the same as the base model.
            model.merge_lora()?;
        }
        let engine = Self::with_model(
            spec,
            path,
            model,
            opts.system.clone(),
            opts.instruction.clone(),
        )?;
        tracing::info!(
            spec,
            layers = engine.model.config().num_layers,
            vocab = engine.model.config().vocab_size,
            load_ms = start.elapsed().as_millis() as u64,
            "model loaded"
        );
        Ok(engine)
    }

    /// An engine over a model already in memory, with the tokenizer and chat template of the
    /// model files at `path` and the given prompt. A clone of an `lm::Model` shares its tensors,
    /// so an engine over a clone of a model in training decodes with the LoRA values of the
    /// moment, without a second copy of the base weights (validation on the metric). Build a new
    /// one after the values change: the prompt prefixes an engine prefills are kept.
    pub fn with_model(
        spec: &str,
        path: &Path,
        model: Model,
        system: Option<String>,
        instruction: String,
    ) -> Result<Engine> {
        let tokenizer = Tokenizer::load(path)?;
        let chat = crate::chat::chat_prompt(spec, &tokenizer, system, instruction)?;
        let (context, end_of_turn) = anchors(spec, &chat, &tokenizer)?;
        let policy = ContextPolicy::new(
            model.config().max_position_embeddings,
            None,
            TruncateSide::Left,
        );
        Ok(Engine {
            spec: spec.to_string(),
            path: path.to_path_buf(),
            model,
            tokenizer,
            chat,
            context,
            end_of_turn,
            policy,
            share_prefix: true,
            template_prefix: OnceLock::new(),
        })
    }

    /// Whether prompts continue from a prefix prefilled once (on by default): the system prompt
    /// and instruction of a single dialogue, the common start of a run's prompts. Off, every
    /// prompt is prefilled whole; results agree to float rounding either way.
    pub fn set_shared_prefix(&mut self, on: bool) {
        self.share_prefix = on;
    }

    /// A step model over this engine's model that starts prompts from `prefix`, or shares
    /// nothing when sharing is off.
    pub(crate) fn step_model<'a>(&'a self, prefix: Option<&'a SharedPrefix>) -> LmStep<'a> {
        let step = LmStep::new(&self.model);
        if self.share_prefix {
            step.with_prefix(prefix)
        } else {
            step.plain()
        }
    }

    /// The template's start (everything before the dialogue), prefilled once per engine; `None`
    /// when sharing is off or two probe prompts share no token.
    pub(crate) fn template_prefix(&self) -> Result<Option<&SharedPrefix>> {
        if !self.share_prefix {
            return Ok(None);
        }
        if let Some(p) = self.template_prefix.get() {
            return Ok(p.as_ref());
        }
        let probes = [
            self.prompt_ids(PROBE_DIALOGUE)?,
            self.prompt_ids(PROBE_OTHER)?,
        ];
        let ids = common_prefix(&probes);
        let prefix = if ids.is_empty() {
            None
        } else {
            Some(SharedPrefix::prefill(&self.model, ids)?)
        };
        // Another thread may have set it meanwhile: either value is the same prefix.
        let _ = self.template_prefix.set(prefix);
        Ok(self.template_prefix.get().and_then(Option::as_ref))
    }

    /// The prefix a run of `prompts` continues from: their common start when there are
    /// several, else the template's.
    pub(crate) fn run_prefix(&self, prompts: &[Vec<u32>]) -> Result<RunPrefix<'_>> {
        if !self.share_prefix {
            return Ok(RunPrefix::None);
        }
        if prompts.len() > 1 {
            let ids = common_prefix(prompts);
            if !ids.is_empty() {
                return Ok(RunPrefix::Own(SharedPrefix::prefill(&self.model, ids)?));
            }
        }
        Ok(self
            .template_prefix()?
            .map_or(RunPrefix::None, RunPrefix::Template))
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

    /// The chat prompt every dialogue is rendered with.
    pub fn chat(&self) -> &ChatPrompt {
        &self.chat
    }

    /// Token ids of the inference prompt for `dialogue` (BOS added only when the template did not
    /// write it), fitted to the context policy with the default answer room.
    pub fn prompt_ids(&self, dialogue: &str) -> Result<Vec<u32>> {
        Ok(self.fit(dialogue, 0)?.encoded)
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
        let s = self.suggest_fitted(trie, dialogue, k, table, None)?;
        Ok((s.suggestions, s.fit.prompt_tokens))
    }

    /// Unconstrained greedy answer for `dialogue` (raw text, for the lenient parser).
    pub fn generate(&self, dialogue: &str, max_new_tokens: usize) -> Result<infer::Generation> {
        let ids = self.fit(dialogue, max_new_tokens)?.encoded;
        let mut step = self.step_model(self.template_prefix()?);
        let mut out = infer::generate(
            &mut step,
            &self.tokenizer,
            &[ids],
            &self.greedy_options(max_new_tokens),
        )?;
        Ok(out.remove(0))
    }

    pub(crate) fn greedy_options(&self, max_new_tokens: usize) -> GenerateOptions {
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
        Ok(self
            .evaluate_fitted(examples, trie, k, max_new_tokens)?
            .predictions)
    }
}

/// The prefix a run continues from: computed for it, or the engine's template prefix.
pub(crate) enum RunPrefix<'a> {
    None,
    Own(SharedPrefix),
    Template(&'a SharedPrefix),
}

impl RunPrefix<'_> {
    pub(crate) fn get(&self) -> Option<&SharedPrefix> {
        match self {
            RunPrefix::None => None,
            RunPrefix::Own(p) => Some(p),
            RunPrefix::Template(p) => Some(p),
        }
    }
}

/// Examples whose beams [`Engine::evaluate`] decodes together. On a CPU a decode step costs
/// about one pass over the weights whatever the number of rows, so batching divides the decode
/// cost; 8 prompts of 5 beams keep a step's matrices small enough to stay memory-bound.
pub(crate) const CONSTRAINED_BATCH: usize = 8;

/// A `.gguf` file's header and metadata read first by the bounded reader of `tokenize`, which
/// names the file and key at fault; candle's reader, which follows, trusts length prefixes.
fn check_gguf(path: &Path) -> Result<()> {
    if path.is_file()
        && path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        tokenize::gguf::GgufMetadata::read(path)?;
    }
    Ok(())
}

/// A candle error while loading becomes one naming the model file (its first line only).
fn model_file_error(path: &Path, e: lm::LmError) -> EngineError {
    match e {
        lm::LmError::Candle(c) => EngineError::ModelFile {
            path: path.to_path_buf(),
            message: c.to_string().lines().next().unwrap_or_default().to_string(),
        },
        other => other.into(),
    }
}

/// Dialogues without gold codes as examples for [`Engine::evaluate`], identified `<id_prefix><n>`
/// (0-based, in order): what benchmarks and smoke runs score when only the predictions or their
/// speed matter.
pub fn unlabelled_examples<S: AsRef<str>>(texts: &[S], id_prefix: &str) -> Vec<Example> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| Example {
            id: format!("{id_prefix}{i}"),
            text: text.as_ref().to_string(),
            codes: Vec::new(),
            meta: Default::default(),
        })
        .collect()
}

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
