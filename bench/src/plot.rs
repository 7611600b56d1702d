//! `ferry-bench plot`: draws the JSON summaries that `run`, `sweep` and
//! `cold` wrote into one SVG. Either latency against percentile (one curve
//! per run, the x axis stretched towards the tail: 90%, 99%, 99.9% are
//! equally spaced), or, for sweeps, p50 and p99 latency against the offered
//! rate (one pair of curves per sweep).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::{Args, ValueEnum};
use plotters::prelude::*;

use crate::report::Summary;

#[derive(Args)]
pub struct PlotArgs {
    /// Directories holding runs' LABEL.json summaries (every summary in each
    /// is drawn).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// The SVG to write.
    #[arg(long)]
    out: PathBuf,
    /// What to draw: `rate` when every run belongs to a sweep with two or
    /// more rates (auto), else `percentiles`.
    #[arg(long, value_enum, default_value_t = Kind::Auto)]
    kind: Kind,
    /// The plot's title.
    #[arg(long)]
    title: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Auto,
    Percentiles,
    Rate,
}

/// A run and the directory it came from.
struct Run {
    dir: String,
    summary: Summary,
}

pub fn plot(args: &PlotArgs) -> Result<()> {
    let mut runs = Vec::new();
    for dir in &args.dirs {
        let found = load(dir)?;
        ensure!(
            !found.is_empty(),
            "{} holds no ferry-bench summary (LABEL.json)",
            dir.display()
        );
        runs.extend(found);
    }
    let groups = sweeps(&runs);
    let kind = match args.kind {
        Kind::Auto => {
            let all_in_sweeps = runs.iter().all(|r| r.summary.sweep.is_some());
            if all_in_sweeps && groups.values().any(|g| g.len() >= 2) {
                Kind::Rate
            } else {
                Kind::Percentiles
            }
        }
        kind => kind,
    };
    if let Some(parent) = args.out.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    match kind {
        Kind::Rate => draw_rates(&args.out, args.title.as_deref(), &groups)?,
        _ => draw_percentiles(&args.out, args.title.as_deref(), &runs)?,
    }
    println!("wrote {}", args.out.display());
    Ok(())
}

/// Every summary in DIR, sorted by label (then by rate for sweeps).
fn load(dir: &Path) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        // Other JSON files may share the directory; only summaries are drawn.
        if let Ok(summary) = serde_json::from_str::<Summary>(&text) {
            runs.push(Run {
                dir: dir.display().to_string(),
                summary,
            });
        }
    }
    runs.sort_by(|a, b| {
        a.summary.label.cmp(&b.summary.label).then(
            a.summary
                .target_rate
                .partial_cmp(&b.summary.target_rate)
                .unwrap_or(std::cmp::Ordering::Equal),
        )
    });
    Ok(runs)
}

/// Sweep points grouped by (directory, sweep), each sorted by rate.
fn sweeps(runs: &[Run]) -> BTreeMap<String, Vec<(f64, f64, f64)>> {
    let mut groups: BTreeMap<String, Vec<(f64, f64, f64)>> = BTreeMap::new();
    let dirs: std::collections::BTreeSet<&str> = runs.iter().map(|r| r.dir.as_str()).collect();
    for run in runs {
        let (Some(sweep), Some(rate)) = (&run.summary.sweep, run.summary.target_rate) else {
            continue;
        };
        if run.summary.count == 0 {
            continue;
        }
        let name = if dirs.len() > 1 {
            format!("{} ({})", sweep, run.dir)
        } else {
            sweep.clone()
        };
        let l = &run.summary.latency_ms;
        groups.entry(name).or_default().push((rate, l.p50, l.p99));
    }
    for points in groups.values_mut() {
        points.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    }
    groups
}

/// x of quantile q on the percentile axis: 0 at 0%, 1 at 90%, 2 at 99%, ...
fn nines(q: f64) -> f64 {
    -(1.0 - q).log10()
}

/// The percentile label of x on that axis.
fn percentile_label(x: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-x));
    let text = format!("{percent:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

fn plot_error<E: std::fmt::Debug>(error: E) -> anyhow::Error {
    anyhow!("drawing the plot: {error:?}")
}

/// Positive latency bounds with some room, for a log axis.
fn latency_range(values: impl Iterator<Item = f64>) -> Result<(f64, f64)> {
    let (mut low, mut high) = (f64::INFINITY, 0.0f64);
    for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
        low = low.min(v);
        high = high.max(v);
    }
    if high == 0.0 {
        bail!("no successful call to draw: every run has count 0");
    }
    Ok((low / 1.5, high * 1.5))
}

fn draw_percentiles(out: &Path, title: Option<&str>, runs: &[Run]) -> Result<()> {
    let mut labels: BTreeMap<&str, usize> = BTreeMap::new();
    for run in runs {
        *labels.entry(run.summary.label.as_str()).or_default() += 1;
    }
    let curves: Vec<(String, Vec<(f64, f64)>)> = runs
        .iter()
        .filter(|run| run.summary.count > 0)
        .map(|run| {
            let name = if labels.get(run.summary.label.as_str()) > Some(&1) {
                format!("{} ({})", run.summary.label, run.dir)
            } else {
                run.summary.label.clone()
            };
            let points = run
                .summary
                .percentiles
                .iter()
                .filter(|(q, _)| *q < 1.0)
                .map(|&(q, ms)| (nines(q), ms))
                .collect();
            (name, points)
        })
        .collect();
    let x_max = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .fold(2.0f64, f64::max)
        .ceil();
    let (y_low, y_high) =
        latency_range(curves.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y)))?;

    let root = SVGBackend::new(out, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title.unwrap_or("latency by percentile"), ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, (y_low..y_high).log_scale())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| format!("{y}"))
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .draw()
        .map_err(plot_error)?;
    for (i, (name, points)) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn draw_rates(
    out: &Path,
    title: Option<&str>,
    groups: &BTreeMap<String, Vec<(f64, f64, f64)>>,
) -> Result<()> {
    let rates = || groups.values().flat_map(|g| g.iter().map(|p| p.0));
    let x_low = rates().fold(f64::INFINITY, f64::min);
    let x_high = rates().fold(0.0f64, f64::max);
    ensure!(x_high > 0.0, "no sweep point to draw");
    let (y_low, y_high) = latency_range(
        groups
            .values()
            .flat_map(|g| g.iter().flat_map(|p| [p.1, p.2])),
    )?;
    let root = SVGBackend::new(out, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            title.unwrap_or("latency by offered rate"),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (x_low / 1.3..x_high * 1.3).log_scale(),
            (y_low..y_high).log_scale(),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| format!("{x}"))
        .y_label_formatter(&|y| format!("{y}"))
        .x_desc("offered rate (calls/s)")
        .y_desc("latency (ms)")
        .draw()
        .map_err(plot_error)?;
    for (i, (name, points)) in groups.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let p50: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.1)).collect();
        let p99: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.2)).collect();
        chart
            .draw_series(LineSeries::new(p50.clone(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(format!("{name} p50"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(LineSeries::new(p99.clone(), color.stroke_width(1)))
            .map_err(plot_error)?
            .label(format!("{name} p99"))
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
        chart
            .draw_series(p99.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(plot_error)?;
        chart
            .draw_series(
                p50.iter()
                    .map(|&p| Circle::new(p, 2, color.stroke_width(1))),
            )
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentile_axis_spaces_nines_evenly() {
        assert!((nines(0.9) - 1.0).abs() < 1e-9);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(3.0), "99.9%");
    }
}
