//! SVG plots rendered to strings with plotters' SVG backend, embedded inline in the HTML.
//!
//! Every plot always renders (with a "no data" note when there is nothing to draw) so that the report
//! has a stable structure. Text is SVG `<text>`, so no font file is embedded or fetched.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::answer::metric_label;
use crate::{ReportError, Results};

/// Black sans-serif text of `size` pixels anchored at its `h` / `v` side: every label drawn
/// beside a mark.
fn label_style(size: u32, h: HPos, v: VPos) -> TextStyle<'static> {
    ("sans-serif", size)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(h, v))
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn plot_err<E: std::fmt::Debug>(plot: &str) -> impl Fn(E) -> ReportError + '_ {
    move |e| ReportError::Plot {
        plot: plot.to_string(),
        message: format!("{e:?}"),
    }
}

/// Renders `draw` into an SVG string of the given size.
fn render(
    plot: &str,
    size: (u32, u32),
    draw: impl FnOnce(&Area) -> Result<(), ReportError>,
) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err(plot))?;
        draw(&root)?;
        root.present().map_err(plot_err(plot))?;
    }
    Ok(svg)
}

fn no_data(root: &Area, plot: &str, what: &str) -> Result<(), ReportError> {
    let (w, h) = root.dim_in_pixel();
    root.draw(&Text::new(
        format!("no data: {what}"),
        (w as i32 / 2, h as i32 / 2),
        label_style(16, HPos::Center, VPos::Center),
    ))
    .map_err(plot_err(plot))
}

/// A labelled group of bars (one bar per series), each with an optional interval.
struct Bar {
    value: f64,
    ci: Option<(f64, f64)>,
}

/// Grouped bar chart on [0, 1] with whiskers; `groups[g][s]` is series `s` in group `g`.
fn grouped_bars(
    root: &Area,
    plot: &str,
    caption: &str,
    group_labels: &[String],
    series: &[String],
    groups: &[Vec<Option<Bar>>],
) -> Result<(), ReportError> {
    let e = plot_err(plot);
    let n_groups = group_labels.len().max(1) as f64;
    let width = 0.8 / series.len().max(1) as f64;
    // Headroom above 1.0 for the legend (one row per series), so it never hides a full bar.
    let top = 1.05 + 0.1 * series.len() as f64;
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .margin_bottom(40)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..n_groups, 0.0..top)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .x_label_formatter(&|_| String::new())
        .y_desc("value")
        .draw()
        .map_err(&e)?;
    for (s, name) in series.iter().enumerate() {
        let c = color(s);
        let bars: Vec<(f64, &Bar)> = groups
            .iter()
            .enumerate()
            .filter_map(|(g, row)| row.get(s).and_then(|b| b.as_ref()).map(|b| (g as f64, b)))
            .collect();
        let x0 = |g: f64| g + 0.1 + s as f64 * width;
        chart
            .draw_series(bars.iter().map(|(g, b)| {
                Rectangle::new([(x0(*g), 0.0), (x0(*g) + width * 0.9, b.value)], c.filled())
            }))
            .map_err(&e)?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
        let whiskers = bars.iter().filter_map(|(g, b)| {
            b.ci.map(|(lo, hi)| {
                let xm = x0(*g) + width * 0.45;
                PathElement::new(vec![(xm, lo), (xm, hi)], BLACK.stroke_width(2))
            })
        });
        chart.draw_series(whiskers).map_err(&e)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight, plot)?;
    column_labels(root, &chart, group_labels, 8, 13, plot)
}

/// A chart whose axes are plain numbers: columns (or groups) counted from 0 along x.
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The series legend every plot draws: boxed, on a mostly opaque white ground, at `position`.
fn legend<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    position: SeriesLabelPosition,
    plot: &str,
) -> Result<(), ReportError> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(plot_err(plot))
}

/// Writes `labels[i]` centred under column `i` of `chart`, `gap` pixels below the x axis in
/// `size`-pixel text: category names, which plotters' own x labels would put on the ticks rather
/// than between them.
fn column_labels(
    root: &Area,
    chart: &Chart,
    labels: &[String],
    gap: i32,
    size: u32,
    plot: &str,
) -> Result<(), ReportError> {
    for (i, label) in labels.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        root.draw(&Text::new(
            label.clone(),
            (x, y + gap),
            label_style(size, HPos::Center, VPos::Top),
        ))
        .map_err(plot_err(plot))?;
    }
    Ok(())
}

/// Headline metrics per model with confidence-interval whiskers.
pub fn metric_bars(results: &Results) -> Result<String, ReportError> {
    let plot = "metric bars";
    let mut keys: Vec<String> = vec![results.primary_metric.clone()];
    if let Some(m) = results.models.first() {
        for k in &m.metrics.top_k {
            keys.push(metrics::names::top_k(*k));
        }
    }
    for k in ["micro_f1", "macro_f1"] {
        if !keys.iter().any(|x| x == k) {
            keys.push(k.to_string());
        }
    }
    let series: Vec<String> = results.models.iter().map(|m| m.name.clone()).collect();
    let groups: Vec<Vec<Option<Bar>>> = keys
        .iter()
        .map(|k| {
            results
                .models
                .iter()
                .map(|m| {
                    m.metrics.headline.get(k).map(|v| Bar {
                        value: v.value,
                        ci: v.ci_low.zip(v.ci_high),
                    })
                })
                .collect()
        })
        .collect();
    let labels: Vec<String> = keys.iter().map(|k| metric_label(k)).collect();
    render(plot, (900, 420), |root| {
        if series.is_empty() {
            return no_data(root, plot, "no model");
        }
        grouped_bars(
            root,
            plot,
            "Headline metrics (whiskers: confidence interval)",
            &labels,
            &series,
            &groups,
        )
    })
}

/// Primary metric against median latency (log scale).
pub fn accuracy_latency(results: &Results) -> Result<String, ReportError> {
    let plot = "accuracy vs latency";
    let pm = results.primary_metric.as_str();
    let points: Vec<(usize, &str, f64, f64)> = results
        .models
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let v = m.metrics.headline.get(pm)?.value;
            let lat = m.metrics.performance.latency_ms_p50?;
            Some((i, m.name.as_str(), lat.max(1e-3), v))
        })
        .collect();
    render(plot, (900, 420), |root| {
        if points.is_empty() {
            return no_data(
                root,
                plot,
                "no model has both latency and the primary metric",
            );
        }
        let e = plot_err(plot);
        let lo = points.iter().map(|p| p.2).fold(f64::INFINITY, f64::min) / 2.0;
        let hi = points.iter().map(|p| p.2).fold(0.0, f64::max) * 2.0;
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!("{} vs median latency", metric_label(pm)),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.05)
            .map_err(&e)?;
        chart
            .configure_mesh()
            .x_desc("median latency per example (ms, log scale)")
            .y_desc(metric_label(pm))
            .draw()
            .map_err(&e)?;
        for (i, name, lat, v) in &points {
            let c = color(*i);
            chart
                .draw_series(std::iter::once(Circle::new((*lat, *v), 6, c.filled())))
                .map_err(&e)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    name.to_string(),
                    (*lat, *v),
                    label_style(13, HPos::Left, VPos::Bottom),
                )))
                .map_err(&e)?;
        }
        Ok(())
    })
}

/// Models x chapters heatmap of per-chapter F1.
pub fn chapter_heatmap(results: &Results) -> Result<String, ReportError> {
    let plot = "chapter heatmap";
    let mut chapters: Vec<(String, String)> = Vec::new();
    for m in &results.models {
        for g in &m.metrics.by_chapter {
            if g.n_gold > 0 && !chapters.iter().any(|c| c.0 == g.group) {
                chapters.push((g.group.clone(), g.label.clone()));
            }
        }
    }
    let order = |g: &str| roman_value(g).unwrap_or(u32::MAX);
    chapters.sort_by(|a, b| order(&a.0).cmp(&order(&b.0)).then_with(|| a.0.cmp(&b.0)));
    let n_rows = results.models.len();
    let height = (120 + 34 * n_rows as u32).max(220);
    render(plot, (900, height), |root| {
        if chapters.is_empty() || n_rows == 0 {
            return no_data(root, plot, "no chapter breakdown");
        }
        let e = plot_err(plot);
        let cols = chapters.len() as f64;
        let mut chart = ChartBuilder::on(root)
            .caption(
                "F1 by ICD-10 chapter (gold codes in the chapter)",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(160)
            .build_cartesian_2d(0.0..cols, 0.0..n_rows as f64)
            .map_err(&e)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .x_label_formatter(&|_| String::new())
            .y_label_formatter(&|_| String::new())
            .draw()
            .map_err(&e)?;
        for (r, m) in results.models.iter().enumerate() {
            let y = (n_rows - 1 - r) as f64;
            for (c, (group, _)) in chapters.iter().enumerate() {
                let g = m.metrics.by_chapter.iter().find(|g| &g.group == group);
                let (fill, text) = match g {
                    Some(g) if g.n_gold > 0 => (heat(g.f1), format!("{:.2}", g.f1)),
                    _ => (RGBColor(235, 235, 235), "-".to_string()),
                };
                let x = c as f64;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x, y), (x + 1.0, y + 1.0)],
                        fill.filled(),
                    )))
                    .map_err(&e)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        text,
                        (x + 0.5, y + 0.5),
                        label_style(11, HPos::Center, VPos::Center),
                    )))
                    .map_err(&e)?;
            }
            let (px, py) = chart.backend_coord(&(0.0, y + 0.5));
            root.draw(&Text::new(
                m.name.clone(),
                (px - 6, py),
                label_style(13, HPos::Right, VPos::Center),
            ))
            .map_err(&e)?;
        }
        let groups: Vec<String> = chapters.iter().map(|(group, _)| group.clone()).collect();
        column_labels(root, &chart, &groups, 6, 12, plot)
    })
}

/// White (0) to dark blue (1).
fn heat(v: f64) -> RGBColor {
    let v = v.clamp(0.0, 1.0);
    let mix = |a: f64, b: f64| (a + (b - a) * v).round() as u8;
    RGBColor(mix(247.0, 8.0), mix(251.0, 81.0), mix(255.0, 156.0))
}

fn roman_value(s: &str) -> Option<u32> {
    let mut total = 0u32;
    let mut prev = 0u32;
    for ch in s.chars().rev() {
        let v = match ch {
            'I' => 1,
            'V' => 5,
            'X' => 10,
            'L' => 50,
            'C' => 100,
            _ => return None,
        };
        if v < prev {
            total = total.checked_sub(v)?;
        } else {
            total += v;
            prev = v;
        }
    }
    (total > 0).then_some(total)
}

/// Recall per training-frequency bucket and model.
pub fn frequency_bars(results: &Results) -> Result<String, ReportError> {
    let plot = "frequency buckets";
    let mut buckets: Vec<(String, String)> = Vec::new();
    for m in &results.models {
        for g in &m.metrics.by_frequency {
            if !buckets.iter().any(|b| b.0 == g.group) {
                buckets.push((g.group.clone(), g.label.clone()));
            }
        }
    }
    let series: Vec<String> = results.models.iter().map(|m| m.name.clone()).collect();
    let groups: Vec<Vec<Option<Bar>>> = buckets
        .iter()
        .map(|(key, _)| {
            results
                .models
                .iter()
                .map(|m| {
                    m.metrics
                        .by_frequency
                        .iter()
                        .find(|g| &g.group == key && g.n_gold > 0)
                        .map(|g| Bar {
                            value: g.recall,
                            ci: None,
                        })
                })
                .collect()
        })
        .collect();
    let labels: Vec<String> = buckets
        .iter()
        .map(|(k, l)| {
            if l.is_empty() {
                k.clone()
            } else {
                format!("{k} ({l})")
            }
        })
        .collect();
    render(plot, (900, 400), |root| {
        if buckets.is_empty() || series.is_empty() {
            return no_data(root, plot, "no frequency breakdown");
        }
        grouped_bars(
            root,
            plot,
            "Recall by code frequency in the training split",
            &labels,
            &series,
            &groups,
        )
    })
}

/// Top-1 accuracy of answered examples against coverage, per model.
pub fn coverage_curve(results: &Results) -> Result<String, ReportError> {
    let plot = "coverage curve";
    let any = results
        .models
        .iter()
        .any(|m| !m.metrics.coverage.points.is_empty());
    render(plot, (900, 420), |root| {
        if !any {
            return no_data(root, plot, "no coverage curve");
        }
        let e = plot_err(plot);
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Accuracy when abstaining below a score threshold",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..1.0, 0.0..1.05)
            .map_err(&e)?;
        chart
            .configure_mesh()
            .x_desc("coverage (share of examples answered)")
            .y_desc("top-1 accuracy of answered")
            .draw()
            .map_err(&e)?;
        for (i, m) in results.models.iter().enumerate() {
            let pts: Vec<(f64, f64)> = m
                .metrics
                .coverage
                .points
                .iter()
                .map(|p| (p.coverage, p.accuracy))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let c = color(i);
            if pts.len() <= 2 {
                // A predictor with one score for everything has a one-point curve: show the points.
                chart
                    .draw_series(pts.iter().map(|p| Circle::new(*p, 4, c.filled())))
                    .map_err(&e)?;
            }
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(&e)?
                .label(m.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 12, y)], c.stroke_width(2))
                });
            if let Some(t) = &m.metrics.coverage.target_reached {
                chart
                    .draw_series(std::iter::once(Circle::new(
                        (t.coverage, t.accuracy),
                        5,
                        c.filled(),
                    )))
                    .map_err(&e)?;
            }
        }
        let target = results
            .models
            .first()
            .map(|m| m.metrics.coverage.target_precision)
            .unwrap_or(0.95);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, target), (1.0, target)],
                BLACK.mix(0.5).stroke_width(1),
            )))
            .map_err(&e)?;
        legend(&mut chart, SeriesLabelPosition::LowerLeft, plot)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn roman_numerals_order_chapters() {
        assert_eq!(super::roman_value("IV"), Some(4));
        assert_eq!(super::roman_value("XIX"), Some(19));
        assert_eq!(super::roman_value("XXII"), Some(22));
        assert_eq!(super::roman_value("unknown"), None);
    }
}
