//! The SVG chart: round-trip latency (p50) and stream throughput against
//! payload size, one line per contender, cross-process where measured
//! (cross-thread otherwise). plotters' SVG backend only: no font files.

use plotters::prelude::*;

use super::matrix::{Metric, Placement};
use super::report::Entry;
use crate::Res;

const COLORS: [RGBColor; 14] = [
    RGBColor(0, 0, 0),
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(31, 119, 180),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(44, 160, 44),
    RGBColor(152, 223, 138),
    RGBColor(174, 199, 232),
    RGBColor(255, 152, 150),
];

/// (contender, [(size, value)]) for one metric and placement.
fn series(
    es: &[Entry],
    metric: Metric,
    place: Placement,
    fig: &str,
) -> Vec<(&'static str, Vec<(f64, f64)>)> {
    let mut out: Vec<(&'static str, Vec<(f64, f64)>)> = Vec::new();
    for e in es
        .iter()
        .filter(|e| e.metric == metric && e.placement == place && e.topology == "1x1")
    {
        let Some(s) = e.figures.get(fig) else {
            continue;
        };
        if s.median.is_nan() || s.median <= 0.0 {
            continue;
        }
        match out.iter_mut().find(|(c, _)| *c == e.contender) {
            Some((_, v)) => v.push((e.size as f64, s.median)),
            None => out.push((e.contender, vec![(e.size as f64, s.median)])),
        }
    }
    for (_, v) in &mut out {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    es: &[Entry],
    metric: Metric,
    fig: &str,
    title: &str,
    y_desc: &str,
    scale: f64,
) -> Res {
    let place = if es
        .iter()
        .any(|e| e.metric == metric && e.placement == Placement::Process)
    {
        Placement::Process
    } else {
        Placement::Thread
    };
    let data = series(es, metric, place, fig);
    let xs: Vec<f64> = data
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.0))
        .collect();
    let ys: Vec<f64> = data
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1 * scale))
        .collect();
    if xs.is_empty() {
        area.titled(&format!("{title}: not measured"), ("sans-serif", 16))?;
        return Ok(());
    }
    let (x0, x1) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(0.0, f64::max),
    );
    let (y0, y1) = (
        ys.iter().copied().fold(f64::INFINITY, f64::min),
        ys.iter().copied().fold(0.0, f64::max),
    );
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{title} ({} placement)", place.name()),
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (x0 / 1.5..x1 * 1.5).log_scale(),
            (y0 / 2.0..y1 * 2.0).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("payload (bytes)")
        .y_desc(y_desc)
        .draw()?;
    for (i, (name, v)) in data.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = v.iter().map(|&(x, y)| (x, y * scale)).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

/// Write the two-panel chart to `path`.
pub fn write(path: &std::path::Path, es: &[Entry]) -> Res {
    let root = SVGBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (l, r) = root.split_horizontally(700);
    panel(&l, es, Metric::Rtt, "p50_ns", "Round trip p50", "ns", 1.0)?;
    panel(
        &r,
        es,
        Metric::Stream,
        "bytes_per_s",
        "Stream throughput",
        "MB/s",
        1e-6,
    )?;
    root.present()?;
    Ok(())
}
