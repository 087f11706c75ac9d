//! Joining loaded runs into one [`Results`]: unique names, the primary metric, paired tests.

use std::collections::{BTreeSet, HashSet};

use metrics::{names, MetricsConfig, PairedComparison};
use types::Prediction;

use crate::load::{LoadedModel, LoadedRun};
use crate::{Excerpt, ModelResult, ReportError, Results, RunInfo, SCHEMA_VERSION};

/// `accuracy` when every prediction has exactly one gold code, `micro_f1` otherwise (also when no
/// predictions are available to decide).
pub fn primary_metric<'a>(predictions: impl IntoIterator<Item = &'a [Prediction]>) -> &'static str {
    let mut any = false;
    for preds in predictions {
        for p in preds {
            any = true;
            if p.gold.len() != 1 {
                return names::MICRO_F1;
            }
        }
    }
    if any {
        names::ACCURACY
    } else {
        names::MICRO_F1
    }
}

/// Builds the comparison from one or more runs. Paired tests are run for every pair of models scored on
/// the same example ids (differences `a - b`, with `a` the model listed first).
pub fn assemble(
    runs: Vec<LoadedRun>,
    cfg: &MetricsConfig,
    generator: &str,
    excerpts: Option<Vec<Excerpt>>,
) -> Result<Results, ReportError> {
    let mut run_infos: Vec<RunInfo> = Vec::new();
    let mut models: Vec<(String, String, LoadedModel)> = Vec::new();
    let mut privacy = None;
    let mut failures = Vec::new();
    let mut seen_runs = BTreeSet::new();
    for run in runs {
        let mut info = run.info;
        let base = info.name.clone();
        let mut k = 2;
        while !seen_runs.insert(info.name.clone()) {
            info.name = format!("{base}-{k}");
            k += 1;
        }
        privacy = privacy.or(run.privacy);
        failures.extend(run.failures);
        for m in run.models {
            models.push((m.name.clone(), info.name.clone(), m));
        }
        run_infos.push(info);
    }
    // Disambiguate model names shared by several runs.
    let mut counts = std::collections::HashMap::new();
    for (name, _, _) in &models {
        *counts.entry(name.clone()).or_insert(0usize) += 1;
    }
    for (name, run, _) in &mut models {
        if counts[name.as_str()] > 1 {
            *name = format!("{name} ({run})");
        }
    }
    let primary = primary_metric(
        models
            .iter()
            .filter_map(|(_, _, m)| m.predictions.as_deref()),
    );
    let value = |m: &LoadedModel| {
        m.metrics
            .headline
            .get(primary)
            .map(|v| v.value)
            .unwrap_or(f64::NEG_INFINITY)
    };
    models.sort_by(|a, b| {
        a.2.kind
            .cmp(&b.2.kind)
            .then_with(|| value(&b.2).total_cmp(&value(&a.2)))
            .then_with(|| a.0.cmp(&b.0))
    });
    let comparisons = paired_tests(&models, cfg)?;
    let results = models
        .into_iter()
        .map(|(name, run, m)| {
            let mut metrics = m.metrics;
            metrics.model = name.clone();
            ModelResult {
                name,
                kind: m.kind,
                run,
                info: m.info,
                metrics,
            }
        })
        .collect();
    Ok(Results {
        schema_version: SCHEMA_VERSION,
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        generator: generator.to_string(),
        runs: run_infos,
        primary_metric: primary.to_string(),
        models: results,
        comparisons,
        privacy,
        excerpts,
        failures,
    })
}

fn paired_tests(
    models: &[(String, String, LoadedModel)],
    cfg: &MetricsConfig,
) -> Result<Vec<PairedComparison>, ReportError> {
    let mut out = Vec::new();
    for (i, (a_name, _, a)) in models.iter().enumerate() {
        for (b_name, _, b) in &models[i + 1..] {
            let (Some(pa), Some(pb)) = (&a.predictions, &b.predictions) else {
                continue;
            };
            let ids_a: HashSet<&str> = pa.iter().map(|p| p.id.as_str()).collect();
            let ids_b: HashSet<&str> = pb.iter().map(|p| p.id.as_str()).collect();
            if ids_a != ids_b {
                tracing::warn!(a = %a_name, b = %b_name, "different example sets; no paired test");
                continue;
            }
            let tests = metrics::compare(a_name, pa, b_name, pb, cfg).map_err(|source| {
                ReportError::Metrics {
                    path: format!("{a_name} vs {b_name}"),
                    source,
                }
            })?;
            out.extend(tests);
        }
    }
    Ok(out)
}
