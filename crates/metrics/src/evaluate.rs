//! One model's metrics: validation, per-example scoring, aggregation with bootstrap intervals.

use std::collections::{BTreeMap, HashMap, HashSet};

use icd::{Code, CodeTable};
use prompt::extract::{classify, Outcome};
use types::Prediction;

use crate::bootstrap::{percentile_interval, resample};
use crate::breakdown::Breakdowns;
use crate::coverage::coverage_curve;
use crate::levels::{LabelSpace, Level};
use crate::performance::performance;
use crate::registry::{aggregate, headline_metrics, Aggregation, LabelCounts, Layout, MacroLabels};
use crate::sample::{score_example, Details, SampleScore};
use crate::{ExtractionCounts, MetricValue, MetricsConfig, MetricsError, ModelMetrics, Validity};

/// Scores one model's predictions.
///
/// `train_counts` maps codes (any spelling) to their number of training examples, for the frequency
/// buckets; pass an empty map when there is no training split (every code is then rare).
///
/// Errors on an empty input, duplicate ids, malformed gold codes and non-finite scores, naming the
/// example id; a malformed *candidate* is not an error but an invalid prediction.
pub fn evaluate(
    model: &str,
    preds: &[Prediction],
    table: &CodeTable,
    train_counts: &HashMap<String, usize>,
    cfg: &MetricsConfig,
) -> Result<ModelMetrics, MetricsError> {
    check_config(cfg)?;
    validate(preds)?;
    let ks = cfg.ks();
    let metrics = headline_metrics(&ks);
    let layout = Layout::new(&metrics, &SampleScore::default());

    let mut space = LabelSpace::new(table, train_counts);
    let mut details = Details::default();
    let mut breakdowns = Breakdowns::new(cfg.frequency);
    let mut types: HashMap<Vec<u32>, u32> = HashMap::new();
    let mut type_rows: Vec<u32> = Vec::new();
    let mut type_of: Vec<u32> = Vec::with_capacity(preds.len());
    // Macro averaging: one entry per (example, exact-code label outcome), as the slot
    // `label * 3 + outcome` it increments and the example whose multiplicity it adds.
    let mut label_slots: Vec<u32> = Vec::new();
    let mut label_example: Vec<u32> = Vec::new();
    let mut abstention: Vec<(Option<f64>, bool)> = Vec::with_capacity(preds.len());
    let mut validity = ValiditySums::default();
    let mut extraction = ExtractionCounts::default();
    let mut row = Vec::with_capacity(layout.width);

    for pred in preds {
        let score = score_example(pred, &mut space, cfg.predicted_set, &mut details);
        layout.row(&metrics, &score, &mut row);
        let t = match types.get(&row) {
            Some(t) => *t,
            None => {
                let t = types.len() as u32;
                types.insert(row.clone(), t);
                type_rows.extend_from_slice(&row);
                t
            }
        };
        type_of.push(t);
        let example = type_of.len() as u32 - 1;
        for &(label, outcome) in &details.labels {
            label_slots.push(label * 3 + outcome as u32);
            label_example.push(example);
        }
        let exact_hit = score.top1_hit[Level::Code as usize];
        breakdowns.add(&details, exact_hit);
        abstention.push((score.top1_logprob, exact_hit));
        validity.add(&score);
        count_extraction(&mut extraction, pred.raw_text.as_deref());
    }

    let label_count = space.label_count(Level::Code);
    let has_macro = metrics.iter().any(|m| {
        matches!(
            m.aggregation,
            Aggregation::MacroPrecision | Aggregation::MacroRecall | Aggregation::MacroF1
        )
    });
    let n_types = types.len();
    let width = layout.width;
    let label_counts = |counts: &[u32]| -> LabelCounts {
        // Branch-free: examples drawn zero times add zero.
        let mut slots = vec![0u64; label_count * 3];
        for (slot, example) in label_slots.iter().zip(&label_example) {
            slots[*slot as usize] += u64::from(counts[*example as usize]);
        }
        LabelCounts::from_slots(&slots)
    };
    let ones = vec![1u32; preds.len()];
    let macro_labels = MacroLabels::new(&label_counts(&ones));
    let stat = |counts: &[u32]| -> Vec<f64> {
        let mut type_counts = vec![0u64; n_types];
        for (t, c) in type_of.iter().zip(counts) {
            type_counts[*t as usize] += u64::from(*c);
        }
        let mut sums = vec![0u64; width];
        for (t, c) in type_counts.iter().enumerate() {
            if *c == 0 {
                continue;
            }
            for (s, v) in sums.iter_mut().zip(&type_rows[t * width..(t + 1) * width]) {
                *s += c * u64::from(*v);
            }
        }
        let macro_values = has_macro.then(|| macro_labels.resampled(&label_counts(counts)));
        metrics
            .iter()
            .zip(&layout.offsets)
            .map(|(m, &off)| {
                aggregate(m.aggregation, &sums[off..], macro_values.flatten()).unwrap_or(f64::NAN)
            })
            .collect()
    };

    let point = stat(&ones);
    let resamples = resample(preds.len(), cfg.bootstrap_samples, cfg.seed, stat);
    tracing::debug!(
        model,
        examples = preds.len(),
        row_types = n_types,
        labels = label_count,
        resamples = resamples.len(),
        "scored"
    );

    let mut headline = BTreeMap::new();
    for (j, metric) in metrics.iter().enumerate() {
        if !point[j].is_finite() {
            continue;
        }
        let per_resample: Vec<f64> = resamples.iter().map(|r| r[j]).collect();
        let ci = percentile_interval(&per_resample, cfg.confidence);
        let support = match metric.aggregation {
            // The denominator column of a mean: examples (or non-empty predictions) it averages over.
            Aggregation::Mean => (0..preds.len())
                .map(|i| {
                    let t = type_of[i] as usize;
                    type_rows[t * width + layout.offsets[j] + 1] as usize
                })
                .sum(),
            _ => preds.len(),
        };
        headline.insert(
            metric.name.clone(),
            MetricValue {
                value: point[j],
                ci_low: ci.map(|c| c.0),
                ci_high: ci.map(|c| c.1),
                higher_is_better: metric.higher_is_better,
                support,
            },
        );
    }

    let (by_chapter, by_frequency) = breakdowns.finish(&space.chapters);
    Ok(ModelMetrics {
        model: model.to_string(),
        n: preds.len(),
        confidence: cfg.confidence,
        bootstrap_samples: cfg.bootstrap_samples,
        headline,
        top_k: ks,
        by_chapter,
        by_frequency,
        coverage: coverage_curve(&abstention, cfg.target_precision, cfg.coverage_points),
        validity: validity.finish(preds.len()),
        extraction,
        performance: performance(preds),
        retrieval: None,
    })
}

pub(crate) fn check_config(cfg: &MetricsConfig) -> Result<(), MetricsError> {
    let bad = |reason: &str| {
        Err(MetricsError::Config {
            reason: reason.to_string(),
        })
    };
    if !(cfg.confidence > 0.0 && cfg.confidence < 1.0) {
        return bad("confidence must lie strictly between 0 and 1");
    }
    if !(cfg.target_precision > 0.0 && cfg.target_precision <= 1.0) {
        return bad("target_precision must lie in (0, 1]");
    }
    if cfg.frequency.rare_max >= cfg.frequency.medium_max {
        return bad("frequency.rare_max must be below frequency.medium_max");
    }
    Ok(())
}

/// Checks the invariants scoring relies on, naming the offending example.
pub(crate) fn validate(preds: &[Prediction]) -> Result<(), MetricsError> {
    if preds.is_empty() {
        return Err(MetricsError::NoPredictions);
    }
    let mut seen = HashSet::with_capacity(preds.len());
    for p in preds {
        if !seen.insert(p.id.as_str()) {
            return Err(MetricsError::DuplicateId { id: p.id.clone() });
        }
        for g in &p.gold {
            Code::parse(g).map_err(|source| MetricsError::MalformedGold {
                id: p.id.clone(),
                code: g.clone(),
                source,
            })?;
        }
        if let Some((rank, c)) = p
            .candidates
            .iter()
            .enumerate()
            .find(|(_, c)| !c.logprob.is_finite())
        {
            return Err(MetricsError::NonFiniteLogprob {
                id: p.id.clone(),
                rank: rank + 1,
                logprob: c.logprob,
            });
        }
    }
    Ok(())
}

#[derive(Default)]
struct ValiditySums {
    non_empty: usize,
    valid_top1: usize,
    leaf_top1: usize,
    candidates: usize,
    valid: usize,
    leaf: usize,
    malformed: usize,
}

impl ValiditySums {
    fn add(&mut self, s: &SampleScore) {
        if !s.empty {
            self.non_empty += 1;
            self.valid_top1 += usize::from(s.top1_valid);
            self.leaf_top1 += usize::from(s.top1_leaf);
        }
        self.candidates += s.candidates as usize;
        self.valid += s.valid as usize;
        self.leaf += s.leaf as usize;
        self.malformed += s.malformed as usize;
    }

    fn finish(&self, n: usize) -> Validity {
        let rate = |num: usize, den: usize| (den > 0).then(|| num as f64 / den as f64);
        Validity {
            non_empty: self.non_empty,
            empty: n - self.non_empty,
            empty_rate: (n - self.non_empty) as f64 / n as f64,
            candidates: self.candidates,
            malformed: self.malformed,
            valid_top1_rate: rate(self.valid_top1, self.non_empty),
            leaf_top1_rate: rate(self.leaf_top1, self.non_empty),
            valid_all_rate: rate(self.valid, self.candidates),
            leaf_all_rate: rate(self.leaf, self.candidates),
        }
    }
}

fn count_extraction(counts: &mut ExtractionCounts, raw_text: Option<&str>) {
    let Some(text) = raw_text else {
        counts.without_text += 1;
        return;
    };
    counts.with_text += 1;
    match classify(text).outcome {
        Outcome::SingleCode => counts.single_code += 1,
        Outcome::CodeList => counts.code_list += 1,
        Outcome::Lenient => counts.lenient_only += 1,
        Outcome::NoCode => counts.no_code += 1,
    }
}
