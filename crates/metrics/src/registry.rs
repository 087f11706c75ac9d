//! The headline metrics: each a per-sample function, an aggregation and a higher-is-better flag.
//!
//! Per-sample values are small integers (a hit and its denominator, or set counts), so every
//! aggregation is a function of column sums. That makes the point estimate and each bootstrap resample
//! the same computation with different example weights.

use crate::levels::Level;
use crate::names;
use crate::sample::{SampleScore, SetCounts};

/// What one example contributes to a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SampleValue {
    /// `num` out of `den` (den 0: the example does not count, e.g. validity of an empty prediction).
    Ratio { num: u32, den: u32 },
    /// Set counts for micro averaging.
    Set(SetCounts),
    /// The example's exact-code label outcomes, kept beside the rows (macro averaging).
    Labels,
}

impl SampleValue {
    fn width(self) -> usize {
        match self {
            SampleValue::Ratio { .. } => 2,
            SampleValue::Set(_) => 3,
            SampleValue::Labels => 0,
        }
    }

    fn write(self, out: &mut Vec<u32>) {
        match self {
            SampleValue::Ratio { num, den } => out.extend([num, den]),
            SampleValue::Set(s) => out.extend([s.tp, s.fp, s.fn_]),
            SampleValue::Labels => {}
        }
    }
}

/// How per-sample values become one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aggregation {
    /// `sum(num) / sum(den)`.
    Mean,
    MicroPrecision,
    MicroRecall,
    MicroF1,
    MacroPrecision,
    MacroRecall,
    MacroF1,
}

type PerSample = Box<dyn Fn(&SampleScore) -> SampleValue + Send + Sync>;

/// One headline metric.
pub(crate) struct Metric {
    pub name: String,
    pub higher_is_better: bool,
    pub per_sample: PerSample,
    pub aggregation: Aggregation,
}

impl Metric {
    fn new(
        name: impl Into<String>,
        higher_is_better: bool,
        aggregation: Aggregation,
        per_sample: impl Fn(&SampleScore) -> SampleValue + Send + Sync + 'static,
    ) -> Metric {
        Metric {
            name: name.into(),
            higher_is_better,
            per_sample: Box::new(per_sample),
            aggregation,
        }
    }
}

fn ratio(hit: bool, counts: bool) -> SampleValue {
    SampleValue::Ratio {
        num: u32::from(hit && counts),
        den: u32::from(counts),
    }
}

/// Every headline metric for the given top-k values, in report order.
pub(crate) fn headline_metrics(ks: &[usize]) -> Vec<Metric> {
    use Aggregation::*;
    let mut m = Vec::new();
    for level in Level::ALL {
        let l = level as usize;
        m.push(Metric::new(
            format!("{}{}", names::ACCURACY, level.suffix()),
            true,
            Mean,
            move |s| ratio(s.top1_hit[l], true),
        ));
    }
    for &k in ks {
        m.push(Metric::new(names::top_k(k), true, Mean, move |s| {
            ratio(s.first_hit_rank.is_some_and(|r| r as usize <= k), true)
        }));
    }
    let exact = Level::Code as usize;
    for (name, agg) in [
        (names::MICRO_PRECISION, MicroPrecision),
        (names::MICRO_RECALL, MicroRecall),
        (names::MICRO_F1, MicroF1),
    ] {
        m.push(Metric::new(name, true, agg, move |s| {
            SampleValue::Set(s.sets[exact])
        }));
    }
    for (name, agg) in [
        (names::MACRO_PRECISION, MacroPrecision),
        (names::MACRO_RECALL, MacroRecall),
        (names::MACRO_F1, MacroF1),
    ] {
        m.push(Metric::new(name, true, agg, |_| SampleValue::Labels));
    }
    for level in [Level::Category, Level::Block, Level::Chapter] {
        let l = level as usize;
        m.push(Metric::new(
            format!("{}{}", names::MICRO_F1, level.suffix()),
            true,
            MicroF1,
            move |s| SampleValue::Set(s.sets[l]),
        ));
    }
    m.push(Metric::new(names::VALID_RATE, true, Mean, |s| {
        ratio(s.top1_valid, !s.empty)
    }));
    m.push(Metric::new(names::LEAF_RATE, true, Mean, |s| {
        ratio(s.top1_leaf, !s.empty)
    }));
    m.push(Metric::new(names::EMPTY_RATE, false, Mean, |s| {
        ratio(s.empty, true)
    }));
    m
}

/// Column layout of the per-example rows: where each metric's values start.
pub(crate) struct Layout {
    pub offsets: Vec<usize>,
    pub width: usize,
}

impl Layout {
    pub fn new(metrics: &[Metric], probe: &SampleScore) -> Layout {
        let mut offsets = Vec::with_capacity(metrics.len());
        let mut width = 0;
        for metric in metrics {
            offsets.push(width);
            width += (metric.per_sample)(probe).width();
        }
        Layout { offsets, width }
    }

    /// The row of one example.
    pub fn row(&self, metrics: &[Metric], score: &SampleScore, out: &mut Vec<u32>) {
        out.clear();
        for metric in metrics {
            (metric.per_sample)(score).write(out);
        }
        debug_assert_eq!(out.len(), self.width);
    }
}

/// Label-wise counts at the exact-code level, for macro averaging.
#[derive(Debug, Clone, Default)]
pub(crate) struct LabelCounts {
    pub tp: Vec<u64>,
    pub fp: Vec<u64>,
    pub fn_: Vec<u64>,
}

impl LabelCounts {
    /// From interleaved slots `label * 3 + outcome` (outcome order: TP, FP, FN).
    pub fn from_slots(slots: &[u64]) -> LabelCounts {
        let mut c = LabelCounts::default();
        for chunk in slots.chunks_exact(3) {
            c.tp.push(chunk[0]);
            c.fp.push(chunk[1]);
            c.fn_.push(chunk[2]);
        }
        c
    }
}

/// Precision, recall and F1 of one label from its counts; `None` for a ratio whose denominator is 0.
fn label_ratios(tp: u64, fp: u64, fn_: u64) -> [Option<f64>; 3] {
    let ratio = |num: u64, den: u64| (den > 0).then(|| num as f64 / den as f64);
    [
        ratio(tp, tp + fp),
        ratio(tp, tp + fn_),
        ratio(2 * tp, 2 * tp + fp + fn_),
    ]
}

/// The label set of the full sample and each label's scores on it: what every bootstrap resample's
/// macro average is taken over.
///
/// A resample in which a label's precision, recall or F1 is undefined (no draw of an example that
/// predicts it, has it as gold, or involves it at all) carries no evidence about that ratio, so the
/// ratio keeps its full-sample value there. The label set, and with it the denominator of the
/// average, stays fixed across resamples, as the estimand does. Averaging over the labels a resample
/// happens to contain instead drops each code seen once from about a third of the resamples; on
/// long-tail label sets, where rare codes score lowest, that shifts nearly every resample above the
/// point estimate. Scoring an undefined ratio as 0 errs the other way (a perfect model would get an
/// interval below 1).
pub(crate) struct MacroLabels {
    /// Per label id: its full-sample `[precision, recall, f1]` (0 for an undefined ratio), `None`
    /// when the label does not occur.
    full: Vec<Option<[f64; 3]>>,
    occurring: usize,
}

impl MacroLabels {
    pub fn new(full: &LabelCounts) -> MacroLabels {
        let full: Vec<Option<[f64; 3]>> = (0..full.tp.len())
            .map(|i| {
                let (tp, fp, fn_) = (full.tp[i], full.fp[i], full.fn_[i]);
                (tp + fp + fn_ > 0).then(|| label_ratios(tp, fp, fn_).map(|r| r.unwrap_or(0.0)))
            })
            .collect();
        let occurring = full.iter().filter(|s| s.is_some()).count();
        MacroLabels { full, occurring }
    }

    /// Macro precision, recall and F1 of one resample (label counts weighted by its multiplicities),
    /// over the full sample's labels; `None` when no label occurs. On the full sample itself (every
    /// multiplicity 1) this is scikit-learn's `average="macro"` with `zero_division=0` over the union
    /// of gold and predicted labels: the point estimate.
    pub fn resampled(&self, c: &LabelCounts) -> Option<(f64, f64, f64)> {
        let mut sum = [0.0; 3];
        for (i, full) in self.full.iter().enumerate() {
            let Some(full) = full else { continue };
            let ratios = label_ratios(c.tp[i], c.fp[i], c.fn_[i]);
            for ((acc, ratio), full) in sum.iter_mut().zip(ratios).zip(full) {
                *acc += ratio.unwrap_or(*full);
            }
        }
        (self.occurring > 0).then(|| {
            let n = self.occurring as f64;
            (sum[0] / n, sum[1] / n, sum[2] / n)
        })
    }
}

/// `num / den`, 0 when `den` is 0 (scikit-learn's `zero_division=0`).
pub(crate) fn safe_div(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// The value of one metric from its column sums (and the label counts for macro metrics). `None` when
/// the metric is undefined (a mean over no example, a macro over no label).
pub(crate) fn aggregate(
    agg: Aggregation,
    sums: &[u64],
    macro_scores: Option<(f64, f64, f64)>,
) -> Option<f64> {
    match agg {
        Aggregation::Mean => (sums[1] > 0).then(|| sums[0] as f64 / sums[1] as f64),
        Aggregation::MicroPrecision => Some(safe_div(sums[0], sums[0] + sums[1])),
        Aggregation::MicroRecall => Some(safe_div(sums[0], sums[0] + sums[2])),
        Aggregation::MicroF1 => Some(safe_div(2 * sums[0], 2 * sums[0] + sums[1] + sums[2])),
        Aggregation::MacroPrecision => macro_scores.map(|m| m.0),
        Aggregation::MacroRecall => macro_scores.map(|m| m.1),
        Aggregation::MacroF1 => macro_scores.map(|m| m.2),
    }
}
