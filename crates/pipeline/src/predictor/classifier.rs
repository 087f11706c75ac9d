//! A LoRA classifier (`[[models.slm]] method = "classifier"`, or any `SEQ_CLS` adapter given to
//! `--adapter`) as a predictor: the inference prompt, fitted as for every language model, through
//! the adapted decoder and its `score` head; every label ranked by probability (softmax for
//! single-label heads, sigmoid for multi-label ones, natural log as the candidate's score). The
//! answer set is the top label (single-label) or every label whose probability reaches the
//! threshold chosen on the validation split ([`choose_threshold`]; multi-label).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Tensor};
use config::Config;
use engine::Engine;
use icd::CodeTable;
use lm::classifier::{ClassifierMeta, Problem};
use prompt::fit::{Fit, FitCounts};
use serve::{SuggestError, Suggested, Suggester};
use types::{Candidate, Example, Prediction};

use super::{load_engine, Predictor};
use crate::settings::Settings;
use crate::suggest::{fitted_suggestion, PredictOutput, SuggestRequest};

/// The thresholds tried on the validation split: 0.05, 0.10, ..., 0.95.
pub fn threshold_grid() -> Vec<f64> {
    (1..=19).map(|i| f64::from(i) / 20.0).collect()
}

/// The multi-label decision threshold: the value of [`threshold_grid`] that maximises micro-F1
/// over `examples` (each: every label's probability, and the indices of its gold labels), a label
/// being predicted when its probability is at least the threshold; ties go to the higher
/// threshold (fewer codes asserted). Gold codes outside the label set cannot be predicted and
/// are not passed here; they lower recall equally at every threshold. Returns the threshold and
/// its micro-F1.
pub fn choose_threshold(examples: &[(Vec<f64>, BTreeSet<usize>)]) -> (f64, f64) {
    let mut best = (0.5, f64::NEG_INFINITY);
    for t in threshold_grid() {
        let (mut tp, mut predicted, mut gold) = (0usize, 0usize, 0usize);
        for (probs, labels) in examples {
            let chosen: Vec<usize> = (0..probs.len()).filter(|&i| probs[i] >= t).collect();
            tp += chosen.iter().filter(|i| labels.contains(i)).count();
            predicted += chosen.len();
            gold += labels.len();
        }
        let denominator = predicted + gold;
        let f1 = if denominator == 0 {
            0.0
        } else {
            2.0 * tp as f64 / denominator as f64
        };
        if f1 >= best.1 {
            best = (t, f1);
        }
    }
    best
}

/// Probabilities of every label from the head's logits.
fn probabilities(logits: &[f64], problem: Problem) -> Vec<f64> {
    match problem {
        Problem::MultiLabel => logits.iter().map(|z| 1.0 / (1.0 + (-z).exp())).collect(),
        Problem::SingleLabel => {
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exp: Vec<f64> = logits.iter().map(|z| (z - max).exp()).collect();
            let sum: f64 = exp.iter().sum();
            exp.iter().map(|e| e / sum).collect()
        }
    }
}

/// A loaded classifier adapter.
pub struct ClassifierPredictor {
    engine: Engine,
    meta: ClassifierMeta,
    adapter: PathBuf,
    load_ms: f64,
    fit: Mutex<FitCounts>,
}

impl ClassifierPredictor {
    /// Loads `spec` with the `SEQ_CLS` adapter at `adapter`.
    pub fn load(spec: &str, adapter: &Path, config: &Config) -> anyhow::Result<Self> {
        let (engine, load_ms) = load_engine(spec, Some(adapter), config, None)?;
        Self::over(engine, adapter, load_ms)
    }

    /// The classifier of an engine whose model carries a head: an adapter loaded from
    /// `adapter`, or a model in training whose adapter will be written there.
    pub fn over(engine: Engine, adapter: &Path, load_ms: f64) -> anyhow::Result<Self> {
        let meta = engine
            .model()
            .score_head()
            .with_context(|| format!("{} is not a classifier adapter", adapter.display()))?
            .meta
            .clone();
        Ok(Self {
            engine,
            meta,
            adapter: adapter.to_path_buf(),
            load_ms,
            fit: Mutex::new(FitCounts::default()),
        })
    }

    pub fn meta(&self) -> &ClassifierMeta {
        &self.meta
    }

    /// Sets the multi-label decision threshold (chosen on validation examples).
    pub fn set_threshold(&mut self, threshold: f64) {
        self.meta.threshold = Some(threshold);
    }

    /// Every label's probability for one dialogue, and what fitting its prompt did.
    pub fn probabilities(&self, dialogue: &str) -> anyhow::Result<(Vec<f64>, Fit)> {
        let fitted = self.engine.fit(dialogue, 0)?;
        let model = self.engine.model();
        let ids = Tensor::new(fitted.encoded.as_slice(), model.device())?.unsqueeze(0)?;
        let logits = model
            .class_logits(&ids)?
            .squeeze(0)?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        Ok((probabilities(&logits, self.meta.problem_type), fitted.fit))
    }

    /// How many leading labels form the answer: one (single-label), or those at or above the
    /// threshold (multi-label).
    fn set_size(&self, ranked: &[(usize, f64)]) -> usize {
        match self.meta.problem_type {
            Problem::SingleLabel => 1,
            Problem::MultiLabel => {
                let t = self.meta.decision_threshold();
                ranked.iter().take_while(|(_, p)| *p >= t).count()
            }
        }
    }

    /// The `k` most probable labels (more when the answer set is longer), best first, ties in
    /// label order, and the answer set's size.
    pub fn ranked(&self, probs: &[f64], k: usize) -> (Vec<Candidate>, usize) {
        let mut ranked: Vec<(usize, f64)> = probs.iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let set = self.set_size(&ranked);
        let candidates = ranked
            .iter()
            .take(k.max(set))
            .map(|&(i, p)| Candidate {
                code: self.meta.labels[i].clone(),
                logprob: p.ln(),
            })
            .collect();
        (candidates, set)
    }
}

impl Predictor for ClassifierPredictor {
    fn predict(&self, examples: &[Example], k: usize) -> anyhow::Result<Vec<Prediction>> {
        let mut fit = FitCounts::default();
        let mut out = Vec::with_capacity(examples.len());
        for ex in examples {
            let start = Instant::now();
            let (probs, f) = self
                .probabilities(&ex.text)
                .with_context(|| format!("example {}", ex.id))?;
            fit.add(&f);
            let (candidates, set) = self.ranked(&probs, k);
            out.push(Prediction {
                id: ex.id.clone(),
                gold: ex.codes.iter().map(|c| c.as_str().to_string()).collect(),
                candidates,
                raw_text: None,
                latency_ms: start.elapsed().as_secs_f64() * 1000.0,
                prompt_tokens: f.prompt_tokens as u64,
                generated_tokens: 0,
                set_size: Some(set),
            });
        }
        if let Ok(mut slot) = self.fit.lock() {
            *slot = fit;
        }
        Ok(out)
    }

    fn details(&self) -> serde_json::Value {
        let mut details = super::lm::model_details(&self.engine, Some(&self.adapter), self.load_ms);
        let specific = serde_json::json!({
            "decoding": "classifier",
            "labels": self.meta.labels.len(),
            "problem_type": self.meta.problem_type,
            "pooling": self.meta.pooling,
            "decision": match self.meta.problem_type {
                Problem::SingleLabel => "top-1".to_string(),
                Problem::MultiLabel => format!("probability >= {}", self.meta.decision_threshold()),
            },
            "threshold": self.meta.threshold,
            "context": super::lm::context_details(&self.engine, &self.fit),
        });
        if let serde_json::Value::Object(specific) = specific {
            details.extend(specific);
        }
        details.into()
    }
}

/// `predict` with a classifier adapter: the `top_k` most probable codes of `dialogue`, described
/// from the code table (`probability` is the head's, not a sequence probability).
pub fn predict_classified(
    settings: &Settings,
    request: &SuggestRequest,
    adapter: &Path,
    dialogue: &str,
    top_k: usize,
) -> anyhow::Result<PredictOutput> {
    let table = CodeTable::icd10cm();
    let predictor = ClassifierPredictor::load(&request.model, adapter, &settings.config)?;
    let start = Instant::now();
    let (probs, fit) = predictor.probabilities(dialogue)?;
    let (candidates, _) = predictor.ranked(&probs, top_k);
    let suggestions = candidates
        .iter()
        .take(top_k)
        .map(|c| {
            let code = icd::Code::parse(&c.code).map_or(c.code.clone(), |p| p.dotted());
            engine::describe(&code, c.logprob, &table)
        })
        .collect();
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    Ok(PredictOutput::fitted(
        &request.model,
        suggestions,
        fit,
        latency_ms,
        predictor.load_ms,
    ))
}

/// A classifier adapter behind the server: one forward per request, no trie.
pub struct ClassifierSuggester {
    predictor: ClassifierPredictor,
    name: String,
}

impl ClassifierSuggester {
    pub fn load(
        settings: &Settings,
        request: &SuggestRequest,
        adapter: &Path,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            predictor: ClassifierPredictor::load(&request.model, adapter, &settings.config)?,
            name: request.model.clone(),
        })
    }
}

impl Suggester for ClassifierSuggester {
    fn suggest(&self, text: &str, top_k: usize) -> Result<Vec<Candidate>, SuggestError> {
        serve::uncancelled(self, text, top_k)
    }

    /// One forward pass: the flag is checked before it starts.
    fn suggest_cancellable(
        &self,
        text: &str,
        top_k: usize,
        cancel: &AtomicBool,
    ) -> Result<Suggested, SuggestError> {
        if cancel.load(Ordering::SeqCst) {
            return Err(SuggestError::cancelled());
        }
        // The error chain names tokens and shapes, never the request text.
        let (probs, fit) = self
            .predictor
            .probabilities(text)
            .map_err(|e| SuggestError::new(format!("model failed: {e:#}")))?;
        let (mut candidates, _) = self.predictor.ranked(&probs, top_k);
        candidates.truncate(top_k);
        Ok(fitted_suggestion(candidates, fit))
    }

    fn model_name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{choose_threshold, probabilities, threshold_grid};
    use lm::classifier::Problem;

    fn ex(probs: &[f64], gold: &[usize]) -> (Vec<f64>, BTreeSet<usize>) {
        (probs.to_vec(), gold.iter().copied().collect())
    }

    /// Three labels, three validation examples, worked by hand. Probabilities e0 = [0.9, 0.3,
    /// 0.1], e1 = [0.2, 0.6, 0.45], e2 = [0.1, 0.3, 0.8]; gold {0}, {1, 2}, {2} (4 gold labels):
    /// - t in (0.20, 0.30]: e0 {0,1}, e1 {1,2}, e2 {1,2}: tp 4, predicted 6 -> F1 8/10 = 0.8;
    /// - t in (0.30, 0.45]: e0 {0}, e1 {1,2}, e2 {2}: tp 4, predicted 4 -> F1 1.0;
    /// - t in (0.45, 0.60]: e0 {0}, e1 {1}, e2 {2}: tp 3, predicted 3 -> F1 6/7 = 0.857.
    ///
    /// F1 1.0 holds at t = 0.35, 0.40 and 0.45: the tie goes to 0.45.
    #[test]
    fn threshold_maximises_validation_micro_f1_and_ties_go_to_the_higher_one() {
        let val = [
            ex(&[0.9, 0.3, 0.1], &[0]),
            ex(&[0.2, 0.6, 0.45], &[1, 2]),
            ex(&[0.1, 0.3, 0.8], &[2]),
        ];
        let (t, f1) = choose_threshold(&val);
        assert!((t - 0.45).abs() < 1e-12, "threshold {t}");
        assert!((f1 - 1.0).abs() < 1e-12, "micro-F1 {f1}");
        let grid = threshold_grid();
        assert_eq!(grid.len(), 19);
        assert!((grid[0] - 0.05).abs() < 1e-12 && (grid[18] - 0.95).abs() < 1e-12);
    }

    #[test]
    fn a_validation_set_where_nothing_is_right_keeps_the_highest_threshold() {
        // Every threshold gives F1 0 (gold label never predicted): the tie rule picks 0.95.
        let val = [ex(&[0.99, 0.0], &[1])];
        let (t, f1) = choose_threshold(&val);
        assert_eq!(f1, 0.0);
        assert!((t - 0.95).abs() < 1e-12);
    }

    #[test]
    fn probabilities_are_softmax_for_single_and_sigmoid_for_multi_label_heads() {
        let p = probabilities(&[0.0, 2f64.ln()], Problem::SingleLabel);
        assert!((p[0] - 1.0 / 3.0).abs() < 1e-12 && (p[1] - 2.0 / 3.0).abs() < 1e-12);
        let p = probabilities(&[0.0, 3f64.ln()], Problem::MultiLabel);
        assert!((p[0] - 0.5).abs() < 1e-12 && (p[1] - 0.75).abs() < 1e-12);
    }
}
