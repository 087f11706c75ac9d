//! The first paragraph of the report: the research question answered from the numbers present.
//!
//! "Can a LoRA-finetuned small model beat larger zero-shot models?" is answered by the best model of
//! each arm on the primary metric, with intervals, and the paired test between them when both were
//! scored on the same examples. A missing arm is said plainly; nothing is extrapolated.

use metrics::{MetricValue, PairedComparison};

use crate::{ModelKind, ModelResult, Results};

/// Sentences of the answer paragraph (plain text; the template escapes it).
pub fn answer(results: &Results) -> Vec<String> {
    let pm = results.primary_metric.as_str();
    let label = metric_label(pm);
    let conf = results
        .models
        .first()
        .map(|m| m.metrics.confidence)
        .unwrap_or(0.95);
    let alpha = 1.0 - conf;
    let best = |kind: ModelKind| {
        results
            .models
            .iter()
            .filter(|m| m.kind == kind)
            .filter_map(|m| m.metrics.headline.get(pm).map(|v| (m, v)))
            .max_by(|a, b| a.1.value.total_cmp(&b.1.value))
    };
    let ft = best(ModelKind::Finetuned);
    let zs = best(ModelKind::ZeroShot);
    let bl = best(ModelKind::Baseline);
    let mut out = Vec::new();
    match (ft, zs) {
        (Some((f, fv)), Some((z, zv))) => {
            let test = find_test(&results.comparisons, &f.name, &z.name, pm);
            let verdict = match test {
                Some((diff, p, lo, hi)) => {
                    let ci = match (lo, hi) {
                        (Some(l), Some(h)) => format!(", {:.0} % CI [{l:+.3}, {h:+.3}]", conf * 100.0),
                        _ => String::new(),
                    };
                    let word = if p < alpha && diff > 0.0 {
                        "Yes"
                    } else if p < alpha && diff < 0.0 {
                        "No"
                    } else {
                        "Not shown"
                    };
                    let p = fmt_p(p);
                    // fmt_p gives "< 0.001" for tiny values: no "=" in front of it.
                    let p = if p.starts_with('<') { format!("p {p}") } else { format!("p = {p}") };
                    format!("{word}: the difference is {diff:+.3}{ci} (paired test {p})")
                }
                None => {
                    let word = match (fv.ci_low, zv.ci_high, fv.ci_high, zv.ci_low) {
                        (Some(fl), Some(zh), _, _) if fl > zh => "Yes (intervals do not overlap)",
                        (_, _, Some(fh), Some(zl)) if fh < zl => "No (intervals do not overlap)",
                        _ => "Not shown (no paired test on common examples; intervals overlap or are missing)",
                    };
                    word.to_string()
                }
            };
            out.push(format!(
                "Can a LoRA-finetuned small model beat larger zero-shot models? {verdict}. \
                 The best finetuned model, {}, reaches {label} {} against {} for the best zero-shot \
                 model, {}.",
                f.name,
                fmt_value(fv, conf),
                fmt_value(zv, conf),
                z.name
            ));
        }
        (Some((f, fv)), None) => out.push(format!(
            "Can a LoRA-finetuned small model beat larger zero-shot models? This report has no \
             zero-shot model, so the question cannot be answered yet. The best finetuned model, {}, \
             reaches {label} {}.",
            f.name,
            fmt_value(fv, conf)
        )),
        (None, Some((z, zv))) => out.push(format!(
            "Can a LoRA-finetuned small model beat larger zero-shot models? This report has no \
             finetuned model, so the question cannot be answered yet. The best zero-shot model, {}, \
             reaches {label} {}.",
            z.name,
            fmt_value(zv, conf)
        )),
        (None, None) => out.push(
            "Can a LoRA-finetuned small model beat larger zero-shot models? This report has neither \
             a finetuned nor a zero-shot model, so the question cannot be answered yet; only the \
             baselines below were run."
                .to_string(),
        ),
    }
    match bl {
        Some((b, bv)) => {
            let mut s = format!(
                "The strongest baseline, {}, reaches {label} {}",
                b.name,
                fmt_value(bv, conf)
            );
            let contenders: Vec<&(&ModelResult, &MetricValue)> =
                ft.iter().chain(zs.iter()).collect();
            for (m, v) in contenders {
                let clears = match find_test(&results.comparisons, &m.name, &b.name, pm) {
                    Some((diff, p, _, _)) if p < alpha => {
                        if diff > 0.0 {
                            "clears it significantly"
                        } else {
                            "falls significantly below it"
                        }
                    }
                    Some(_) => "is not significantly different from it",
                    None if v.value > bv.value => "scores higher (no paired test)",
                    None => "does not score higher (no paired test)",
                };
                s.push_str(&format!("; {} {clears}", m.name));
            }
            s.push('.');
            out.push(s);
        }
        None => out.push("No baseline is in this report.".to_string()),
    }
    out
}

/// The paired test of `metric` between `a` and `b`, oriented as `a - b`: (diff, p, ci_low, ci_high).
fn find_test(
    tests: &[PairedComparison],
    a: &str,
    b: &str,
    metric: &str,
) -> Option<(f64, f64, Option<f64>, Option<f64>)> {
    tests.iter().find_map(|t| {
        if t.metric != metric {
            None
        } else if t.a == a && t.b == b {
            Some((t.diff, t.p_value, t.ci_low, t.ci_high))
        } else if t.a == b && t.b == a {
            Some((
                -t.diff,
                t.p_value,
                t.ci_high.map(|h| -h),
                t.ci_low.map(|l| -l),
            ))
        } else {
            None
        }
    })
}

pub fn metric_label(name: &str) -> String {
    match name {
        "accuracy" => "accuracy".into(),
        "micro_f1" => "micro-F1".into(),
        "macro_f1" => "macro-F1".into(),
        other => other.replace('_', " "),
    }
}

pub fn fmt_value(v: &MetricValue, conf: f64) -> String {
    match (v.ci_low, v.ci_high) {
        (Some(l), Some(h)) => format!("{:.3} ({:.0} % CI {l:.3}-{h:.3})", v.value, conf * 100.0),
        _ => format!("{:.3} (no interval)", v.value),
    }
}

pub fn fmt_p(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("{p:.3}")
    }
}
