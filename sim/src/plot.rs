//! Plots (PNG and SVG) with plotters. Text needs a TrueType font registered at run time: the
//! system's DejaVu Sans (`/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf`, Debian package
//! `fonts-dejavu-core`), or the file named by `HAMI_PLOT_FONT`.

use crate::report::{BinRow, POLICY_ORDER, RunRow, mean_sd};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

/// Default font file.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

static FONT: OnceLock<Result<(), String>> = OnceLock::new();

/// Register the plot font once; the error says which file is missing and how to fix it.
pub fn ensure_font() -> Result<(), String> {
    FONT.get_or_init(|| {
        let path = std::env::var("HAMI_PLOT_FONT").unwrap_or_else(|_| DEFAULT_FONT.to_string());
        let bytes = std::fs::read(&path).map_err(|e| {
            format!(
                "plot font {path}: {e} (install fonts-dejavu-core or set HAMI_PLOT_FONT to a .ttf file)"
            )
        })?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("plot font {path}: not a usable TrueType font"))
    })
    .clone()
}

fn color(policy: &str) -> RGBColor {
    match policy {
        "random" => RGBColor(127, 127, 127),
        "dotproduct" => RGBColor(31, 119, 180),
        "clustering" => RGBColor(44, 160, 44),
        "packing" => RGBColor(148, 103, 189),
        "bestfit" => RGBColor(255, 127, 14),
        "fgd" => RGBColor(214, 39, 40),
        _ => RGBColor(140, 86, 75),
    }
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

fn e<E: std::fmt::Debug>(x: E) -> String {
    format!("plot: {x:?}")
}

/// The paper-style figure: unallocated GPU (% of capacity) against arrived workload (% of
/// capacity), x from 75 to 130, per policy the median over seeds and a 25–75 % band.
pub fn curve(bins: &[BinRow], trace: &str, title: &str, out: &Path) -> Result<(), String> {
    ensure_font()?;
    // policy → arrived → values over seeds
    let mut m: BTreeMap<&str, BTreeMap<i32, Vec<f64>>> = BTreeMap::new();
    for b in bins.iter().filter(|b| b.trace == trace) {
        if (75..=130).contains(&b.arrived) && b.unallocated.is_finite() {
            m.entry(b.policy.as_str())
                .or_default()
                .entry(b.arrived)
                .or_default()
                .push(b.unallocated);
        }
    }
    let ymax = m
        .values()
        .flat_map(|x| x.values().flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    let png = out.with_extension("png");
    draw_curve(
        BitMapBackend::new(&png, (1000, 650)).into_drawing_area(),
        &m,
        ymax,
        title,
    )?;
    let svg = out.with_extension("svg");
    draw_curve(
        SVGBackend::new(&svg, (1000, 650)).into_drawing_area(),
        &m,
        ymax,
        title,
    )
}

type Curves<'a> = BTreeMap<&'a str, BTreeMap<i32, Vec<f64>>>;

fn draw_curve<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    m: &Curves<'_>,
    ymax: f64,
    title: &str,
) -> Result<(), String> {
    {
        area.fill(&WHITE).map_err(e)?;
        let mut ch = ChartBuilder::on(&area)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(75f64..130f64, 0f64..(ymax * 1.1).max(1.0))
            .map_err(e)?;
        ch.configure_mesh()
            .x_desc("Arrived workload (% of cluster GPU capacity)")
            .y_desc("Unallocated GPU (% of capacity)")
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .draw()
            .map_err(e)?;
        let mut pols: Vec<&&str> = m.keys().collect();
        pols.sort_by_key(|p| POLICY_ORDER.iter().position(|x| *x == **p).unwrap_or(99));
        for p in pols {
            let c = color(p);
            let series = &m[*p];
            let mut med = Vec::new();
            let mut band_lo = Vec::new();
            let mut band_hi = Vec::new();
            for (&a, v) in series {
                let mut v = v.clone();
                med.push((f64::from(a), quantile(&mut v, 0.5)));
                band_lo.push((f64::from(a), quantile(&mut v, 0.25)));
                band_hi.push((f64::from(a), quantile(&mut v, 0.75)));
            }
            let mut poly = band_lo.clone();
            poly.extend(band_hi.iter().rev());
            ch.draw_series(std::iter::once(Polygon::new(poly, c.mix(0.2))))
                .map_err(e)?;
            ch.draw_series(LineSeries::new(med, c.stroke_width(2)))
                .map_err(e)?
                .label(p.to_string())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3))
                });
        }
        ch.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
        area.present().map_err(e)?;
        Ok(())
    }
}

/// Grouped bars: unallocated GPU at 100 % arrival, mean ± sd over seeds, per trace and policy.
pub fn bars(rows: &[RunRow], traces: &[&str], title: &str, out: &Path) -> Result<(), String> {
    ensure_font()?;
    let pols: Vec<&str> = POLICY_ORDER
        .iter()
        .copied()
        .filter(|p| rows.iter().any(|r| r.policy == *p))
        .collect();
    let traces: Vec<&str> = traces
        .iter()
        .copied()
        .filter(|t| rows.iter().any(|r| r.trace == *t))
        .collect();
    let mut vals: Vec<(usize, usize, f64, f64)> = Vec::new();
    for (ti, t) in traces.iter().enumerate() {
        for (pi, p) in pols.iter().enumerate() {
            let (m, sd, n) = mean_sd(
                rows.iter()
                    .filter(|r| r.trace == *t && r.policy == *p)
                    .map(|r| r.u100),
            );
            if n > 0 {
                vals.push((ti, pi, m, sd));
            }
        }
    }
    let ymax = vals.iter().fold(0.0f64, |a, v| a.max(v.2 + v.3));
    let png = out.with_extension("png");
    draw_bars(
        BitMapBackend::new(&png, (1100, 600)).into_drawing_area(),
        &traces,
        &pols,
        &vals,
        ymax,
        title,
    )?;
    let svg = out.with_extension("svg");
    draw_bars(
        SVGBackend::new(&svg, (1100, 600)).into_drawing_area(),
        &traces,
        &pols,
        &vals,
        ymax,
        title,
    )
}

fn draw_bars<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    traces: &[&str],
    pols: &[&str],
    vals: &[(usize, usize, f64, f64)],
    ymax: f64,
    title: &str,
) -> Result<(), String> {
    let np = pols.len().max(1) as f64;
    {
        area.fill(&WHITE).map_err(e)?;
        let nt = traces.len().max(1) as f64;
        let mut ch = ChartBuilder::on(&area)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..nt, 0f64..(ymax * 1.45).max(1.0))
            .map_err(e)?;
        ch.configure_mesh()
            .disable_x_mesh()
            .x_labels(traces.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 0.01 && i < traces.len() {
                    traces[i].to_string()
                } else {
                    String::new()
                }
            })
            .x_desc("Trace (pod list)")
            .y_desc("Unallocated GPU at 100 % arrival (% of capacity)")
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .draw()
            .map_err(e)?;
        let w = 0.8 / np;
        for (pi, p) in pols.iter().enumerate() {
            let c = color(p);
            let mine: Vec<&(usize, usize, f64, f64)> = vals.iter().filter(|v| v.1 == pi).collect();
            ch.draw_series(mine.iter().map(|v| {
                let x0 = v.0 as f64 + 0.1 + w * pi as f64;
                Rectangle::new([(x0, 0.0), (x0 + w * 0.9, v.2)], c.filled())
            }))
            .map_err(e)?
            .label(p.to_string())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], c.filled()));
            ch.draw_series(mine.iter().map(|v| {
                let xm = v.0 as f64 + 0.1 + w * pi as f64 + w * 0.45;
                PathElement::new(vec![(xm, v.2 - v.3), (xm, v.2 + v.3)], BLACK)
            }))
            .map_err(e)?;
        }
        ch.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
        area.present().map_err(e)?;
        Ok(())
    }
}
