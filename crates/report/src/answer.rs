//! The first paragraph of the report: the research question answered from the numbers present.
//!
//! "Can a LoRA-finetuned small model beat larger zero-shot models?" is answered by the best model of
//! each arm on the primary metric, with intervals, and the paired test between them when both were
//! scored on the same examples. A missing arm is said plainly; nothing is extrapolated. The question
//! names the zero-shot models it is asked of, and says "larger" only when their recorded parameter
//! counts show it.

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
    let question = question(results);
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
                "{question} {verdict}. The best finetuned model, {}, reaches {label} {} against {} \
                 for the best zero-shot model, {}.",
                sized(f),
                fmt_value(fv, conf),
                fmt_value(zv, conf),
                z.name
            ));
        }
        (Some((f, fv)), None) => out.push(format!(
            "{question} This report has no zero-shot model, so the question cannot be answered yet. \
             The best finetuned model, {}, reaches {label} {}.",
            sized(f),
            fmt_value(fv, conf)
        )),
        (None, Some((z, zv))) => out.push(format!(
            "{question} This report has no finetuned model, so the question cannot be answered yet. \
             The best zero-shot model, {}, reaches {label} {}.",
            z.name,
            fmt_value(zv, conf)
        )),
        (None, None) => out.push(format!(
            "{question} This report has neither a finetuned nor a zero-shot model, so the question \
             cannot be answered yet; only the baselines below were run."
        )),
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

/// The research question, asked of the zero-shot models in the report: "larger" only when each of
/// them has more recorded parameters than every finetuned model (unknown sizes claim nothing).
fn question(results: &Results) -> String {
    let arm = |kind: ModelKind| results.models.iter().filter(move |m| m.kind == kind);
    let largest_finetuned: Option<Option<u64>> = arm(ModelKind::Finetuned)
        .map(parameters)
        .reduce(|a, b| a.zip(b).map(|(a, b)| a.max(b)));
    let zero_shot: Vec<&ModelResult> = arm(ModelKind::ZeroShot).collect();
    let larger = match largest_finetuned {
        Some(Some(finetuned)) if !zero_shot.is_empty() => zero_shot
            .iter()
            .all(|z| parameters(z).is_some_and(|p| p > finetuned)),
        _ => false,
    };
    let named = if zero_shot.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = zero_shot
            .iter()
            .map(|z| match parameters(z) {
                Some(p) => format!("{}, {}", z.name, fmt_parameters(p)),
                None => z.name.clone(),
            })
            .collect();
        format!(" (here: {})", names.join("; "))
    };
    let larger = if larger { "larger " } else { "" };
    format!("Can a LoRA-finetuned small model beat {larger}zero-shot models{named}?")
}

/// Parameter count recorded in the model's `model.json`.
fn parameters(m: &ModelResult) -> Option<u64> {
    m.info.as_ref().and_then(|i| i.parameters())
}

/// The model's name with its parameter count when recorded.
fn sized(m: &ModelResult) -> String {
    match parameters(m) {
        Some(p) => format!("{} ({})", m.name, fmt_parameters(p)),
        None => m.name.clone(),
    }
}

/// `1.7B parameters`, `135M parameters`, `52K parameters`.
fn fmt_parameters(p: u64) -> String {
    let p = p as f64;
    if p >= 1e9 {
        format!("{:.1}B parameters", p / 1e9)
    } else if p >= 1e6 {
        format!("{:.0}M parameters", p / 1e6)
    } else if p >= 1e3 {
        format!("{:.0}K parameters", p / 1e3)
    } else {
        format!("{p} parameters")
    }
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
