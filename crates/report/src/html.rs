//! The self-contained HTML page: a minijinja template compiled into the binary, inline CSS, inline SVG.
//! No script, no external stylesheet, font or image: the page renders offline and fetches nothing.

use minijinja::{context, Environment};
use serde::Serialize;

use crate::answer::{answer, fmt_p, metric_label};
use crate::{plots, ReportError, Results};

/// `id` attributes of the plots' `<svg>` elements, in page order.
pub const PLOT_IDS: [&str; 5] = [
    "plot-metrics",
    "plot-latency",
    "plot-chapters",
    "plot-frequency",
    "plot-coverage",
];

/// Draws one plot as an SVG document.
type Draw = fn(&Results) -> Result<String, ReportError>;

/// Title, note under the plot, and how to draw it, for each of [`PLOT_IDS`] in turn.
const PLOTS: [(&str, &str, Draw); 5] = [
    (
        "Metrics per model",
        "Bars are point estimates on all examples; whiskers are percentile bootstrap intervals.",
        plots::metric_bars,
    ),
    (
        "Quality vs latency",
        "Primary metric against the median per-example latency.",
        plots::accuracy_latency,
    ),
    (
        "Per-chapter heatmap",
        "F1 over the exact codes of each true ICD-10 chapter; '-' where the model saw no gold code of the chapter.",
        plots::chapter_heatmap,
    ),
    (
        "Frequency buckets",
        "Recall of gold codes grouped by how often they occur in the training split.",
        plots::frequency_bars,
    ),
    (
        "Coverage curve",
        "Top-1 accuracy among answered examples when abstaining below a top-1 score threshold; dots mark the largest coverage reaching the target precision (grey line).",
        plots::coverage_curve,
    ),
];

const TEMPLATE: &str = include_str!("../templates/report.html");

#[derive(Serialize)]
struct Plot {
    id: &'static str,
    title: &'static str,
    note: &'static str,
    svg: String,
}

#[derive(Serialize)]
struct Row {
    name: String,
    kind: String,
    run: String,
    n: usize,
    cells: Vec<String>,
}

/// Renders the report page.
pub fn render_html(results: &Results) -> Result<String, ReportError> {
    let plots = PLOT_IDS
        .into_iter()
        .zip(PLOTS)
        .map(|(id, (title, note, draw))| {
            Ok(Plot {
                id,
                title,
                note,
                svg: tag_svg(&draw(results)?, id),
            })
        })
        .collect::<Result<Vec<Plot>, ReportError>>()?;
    let (columns, rows) = table(results);
    let comparisons: Vec<Vec<String>> = results
        .comparisons
        .iter()
        .map(|c| {
            vec![
                c.a.clone(),
                c.b.clone(),
                metric_label(&c.metric),
                format!("{:.3}", c.value_a),
                format!("{:.3}", c.value_b),
                format!("{:+.3}", c.diff),
                match (c.ci_low, c.ci_high) {
                    (Some(l), Some(h)) => format!("[{l:+.3}, {h:+.3}]"),
                    _ => "-".into(),
                },
                fmt_p(c.p_value),
                format!("{:?}", c.test),
                c.n.to_string(),
            ]
        })
        .collect();
    let runs: Vec<_> = results
        .runs
        .iter()
        .map(|r| {
            context! {
                name => r.name,
                dir => r.dir,
                manifest => r.manifest.as_ref().map(|m| serde_json::to_string_pretty(m).unwrap_or_default()),
            }
        })
        .collect();
    let infos: Vec<_> = results
        .models
        .iter()
        .filter_map(|m| m.info.as_ref().map(|i| (m, i)))
        .map(|(m, i)| {
            context! {
                name => m.name,
                spec => i.spec,
                dataset => i.dataset,
                split => i.split,
                training => i.training(),
                n_eval => i.n_eval,
                train_time => i.train_time_s.map(|t| format!("{t:.1} s")),
                predict_time => format!("{:.1} s", i.predict_time_s),
                details => if i.details.is_null() { String::new() } else { i.details.to_string() },
            }
        })
        .collect();
    let privacy = results
        .privacy
        .as_ref()
        .map(|p| serde_json::to_string_pretty(p).unwrap_or_default());
    // A typed audit gets readable tables; anything else is shown verbatim.
    let audit = results
        .privacy
        .as_ref()
        .and_then(|p| serde_json::from_value::<crate::PrivacyAudit>(p.clone()).ok());
    let mut env = Environment::new();
    env.add_template("report.html", TEMPLATE)
        .map_err(|e| ReportError::Render(e.to_string()))?;
    let tmpl = env
        .get_template("report.html")
        .map_err(|e| ReportError::Render(e.to_string()))?;
    tmpl.render(context! {
        answer => answer(results),
        primary => metric_label(&results.primary_metric),
        columns => columns,
        rows => rows,
        comparisons => comparisons,
        plots => plots,
        runs => runs,
        infos => infos,
        privacy => privacy,
        audit => audit,
        excerpts => results.excerpts,
        failures => results.failures,
        generated_at => results.generated_at,
        generator => results.generator,
        schema_version => results.schema_version,
    })
    .map_err(|e| ReportError::Render(format!("{e:#}")))
}

/// Gives the root `<svg>` its id and drops the XML namespace attribute (HTML5 inline SVG needs none,
/// and the page then names no URL at all).
fn tag_svg(svg: &str, id: &str) -> String {
    let Some(start) = svg.find("<svg") else {
        return svg.to_string();
    };
    let head_end = svg[start..]
        .find('>')
        .map(|e| start + e)
        .unwrap_or(svg.len());
    let mut head = svg[start..head_end].to_string();
    while let Some(pos) = head.find(" xmlns") {
        let rest = &head[pos + 1..];
        let Some(q1) = rest.find('"') else { break };
        let Some(q2) = rest[q1 + 1..].find('"') else {
            break;
        };
        head.replace_range(pos..pos + 1 + q1 + 1 + q2 + 1, "");
    }
    head = head.replacen("<svg", &format!("<svg id=\"{id}\" role=\"img\""), 1);
    format!("{}{}{}", &svg[..start], head, &svg[head_end..])
}

/// Column headers and one row per model: primary metric, accuracy, top-k, F1s, validity, speed.
fn table(results: &Results) -> (Vec<String>, Vec<Row>) {
    let mut keys: Vec<String> = vec![results.primary_metric.clone()];
    let mut push = |k: String| {
        if !keys.contains(&k) {
            keys.push(k);
        }
    };
    push("accuracy".into());
    if let Some(m) = results.models.first() {
        for k in &m.metrics.top_k {
            push(metrics::names::top_k(*k));
        }
    }
    for k in [
        "micro_f1",
        "macro_f1",
        "accuracy_category",
        "accuracy_chapter",
        "valid_rate",
        "empty_rate",
    ] {
        push(k.to_string());
    }
    let mut columns: Vec<String> = keys.iter().map(|k| metric_label(k)).collect();
    columns[0] = format!("{} (CI)", columns[0]);
    // Only when an arm was narrowed by a retriever: its recall@k caps that arm's recall.
    let narrowed = results.models.iter().any(|m| m.metrics.retrieval.is_some());
    if narrowed {
        columns.push("retriever recall@k".into());
    }
    columns.push("latency p50 ms".into());
    columns.push("examples/s".into());
    let rows = results
        .models
        .iter()
        .map(|m| {
            let mut cells: Vec<String> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| match m.metrics.headline.get(k) {
                    Some(v) if i == 0 => match (v.ci_low, v.ci_high) {
                        (Some(l), Some(h)) => format!("{:.3} [{l:.3}, {h:.3}]", v.value),
                        _ => format!("{:.3}", v.value),
                    },
                    Some(v) => format!("{:.3}", v.value),
                    None => "-".into(),
                })
                .collect();
            if narrowed {
                cells.push(retrieval_cell(m.metrics.retrieval.as_ref()));
            }
            let perf = &m.metrics.performance;
            cells.push(
                perf.latency_ms_p50
                    .map_or("-".into(), |v| format!("{v:.2}")),
            );
            cells.push(
                perf.examples_per_s
                    .map_or("-".into(), |v| format!("{v:.1}")),
            );
            Row {
                name: m.name.clone(),
                kind: m.kind.label().to_string(),
                run: m.run.clone(),
                n: m.metrics.n,
                cells,
            }
        })
        .collect();
    (columns, rows)
}

/// `0.812 (tfidf@50)`: the retriever's recall@k with what produced it; `-` for an arm that
/// was not narrowed or whose examples have no gold code.
fn retrieval_cell(r: Option<&metrics::RetrievalRecall>) -> String {
    match r {
        Some(r) => match r.recall {
            Some(v) => format!("{v:.3} ({}@{})", r.retriever, r.k),
            None => format!("- ({}@{})", r.retriever, r.k),
        },
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn svg_gets_an_id_and_loses_its_namespace() {
        let svg =
            "<svg width=\"10\" height=\"10\" viewBox=\"0 0 10 10\" xmlns=\"urn:x\">\n<rect/></svg>";
        let out = super::tag_svg(svg, "plot-x");
        assert_eq!(out, "<svg id=\"plot-x\" role=\"img\" width=\"10\" height=\"10\" viewBox=\"0 0 10 10\">\n<rect/></svg>");
    }
}
