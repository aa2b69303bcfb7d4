//! Reports of a `hami sim run`: a summary table (terminal and markdown), `report.md`,
//! a self-contained `report.html` (inline SVG plots) and the plots as PNG and SVG.

use super::metrics::MetricName;
use super::model::Scenario;
use super::results::{Results, RunRecord};
use crate::plot::ensure_font;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn e<E: std::fmt::Debug>(x: E) -> String {
    format!("plot: {x:?}")
}

/// The summary table as aligned text (one block per variant).
pub fn summary_table(res: &Results, cols: &[MetricName]) -> String {
    let mut s = String::new();
    for v in &res.variants {
        if res.variants.len() > 1 {
            let _ = writeln!(s, "\n{v}");
        }
        let mut header = vec!["policy".to_string()];
        header.extend(cols.iter().map(|m| {
            if m.unit().is_empty() {
                m.as_str().to_string()
            } else {
                format!("{} ({})", m.as_str(), m.unit())
            }
        }));
        let mut rows = vec![header];
        for p in &res.policies {
            let mut row = vec![p.clone()];
            for m in cols {
                let st = res
                    .summary
                    .get(v)
                    .and_then(|x| x.get(p))
                    .and_then(|x| x.get(m.as_str()));
                row.push(match st {
                    Some(st) if st.n > 1 && st.sd > 0.0 => {
                        format!("{} ± {}", m.format(st.mean), m.format(st.sd))
                    }
                    Some(st) => m.format(st.mean),
                    None => "–".into(),
                });
            }
            rows.push(row);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for (i, r) in rows.iter().enumerate() {
            let line: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(c, x)| {
                    if c == 0 {
                        format!("{x:<w$}", w = widths[c])
                    } else {
                        format!("{x:>w$}", w = widths[c])
                    }
                })
                .collect();
            let _ = writeln!(s, "{}", line.join("  "));
            if i == 0 {
                let _ = writeln!(
                    s,
                    "{}",
                    widths
                        .iter()
                        .map(|w| "-".repeat(*w))
                        .collect::<Vec<_>>()
                        .join("  ")
                );
            }
        }
    }
    s
}

fn md_table(res: &Results, v: &str, cols: &[MetricName]) -> String {
    let mut s = String::new();
    let _ = write!(s, "| policy |");
    for m in cols {
        let u = if m.unit().is_empty() {
            String::new()
        } else {
            format!(" ({})", m.unit())
        };
        let _ = write!(s, " {}{u} |", m.as_str());
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|---|{}", "---:|".repeat(cols.len()));
    for p in &res.policies {
        let _ = write!(s, "| {p} |");
        for m in cols {
            let st = res
                .summary
                .get(v)
                .and_then(|x| x.get(p))
                .and_then(|x| x.get(m.as_str()));
            let cell = match st {
                Some(st) if st.n > 1 => format!("{} ± {}", m.format(st.mean), m.format(st.sd)),
                Some(st) => m.format(st.mean),
                None => "–".into(),
            };
            let _ = write!(s, " {cell} |");
        }
        let _ = writeln!(s);
    }
    s
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

struct Line {
    name: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

fn time_unit(max_s: f64) -> (f64, &'static str) {
    if max_s > 3.0 * 3600.0 {
        (3600.0, "h")
    } else if max_s > 180.0 {
        (60.0, "min")
    } else {
        (1.0, "s")
    }
}

fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    xdesc: &str,
    ydesc: &str,
    lines: &[Line],
    y0: Option<(f64, f64)>,
    x0: Option<(f64, f64)>,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE).map_err(e)?;
    let pts = lines.iter().flat_map(|l| l.points.iter());
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        if x.is_finite() && y.is_finite() {
            xmin = xmin.min(x);
            xmax = xmax.max(x);
            ymin = ymin.min(y);
            ymax = ymax.max(y);
        }
    }
    if xmin > xmax {
        (xmin, xmax, ymin, ymax) = (0.0, 1.0, 0.0, 1.0);
    }
    let (xa, xb) = x0.unwrap_or((xmin, if xmax > xmin { xmax } else { xmin + 1.0 }));
    let (ya, yb) = y0.unwrap_or((0.0f64.min(ymin), if ymax > 0.0 { ymax * 1.08 } else { 1.0 }));
    let mut ch = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(xa..xb, ya..yb)
        .map_err(e)?;
    let share = |v: f64, a: f64, b: f64| (v - a) / (b - a).max(f64::MIN_POSITIVE);
    plot_lines(
        &mut ch,
        xdesc,
        ydesc,
        lines,
        |x, y| (x, y),
        |x, y| (share(x, xa, xb), share(y, ya, yb)),
    )
}

/// The common part of the line charts: labelled axes and mesh, one line per entry of `lines`
/// (each data point drawn at `place(x, y)`), and the legend in the corner where it covers the
/// fewest drawn points (`share` gives a drawn point as shares of the axes, see
/// [`emptiest_corner`]).
fn plot_lines<'a, DB, X>(
    ch: &mut ChartContext<'a, DB, Cartesian2d<X, plotters::coord::types::RangedCoordf64>>,
    xdesc: &str,
    ydesc: &str,
    lines: &[Line],
    place: impl Fn(f64, f64) -> (f64, f64),
    share: impl Fn(f64, f64) -> (f64, f64),
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    ch.configure_mesh()
        .x_desc(xdesc)
        .y_desc(ydesc)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(e)?;
    for l in lines {
        let c = l.color;
        let pts = l.points.iter().map(|&(x, y)| place(x, y));
        ch.draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(e)?
            .label(l.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], c.stroke_width(3)));
    }
    // Each segment counts as points along it: a long jump between sparse points crosses
    // corners its ends are not in.
    let corner = emptiest_corner(lines.iter().flat_map(|l| {
        let drawn: Vec<(f64, f64)> = l
            .points
            .iter()
            .map(|&(x, y)| {
                let (px, py) = place(x, y);
                share(px, py)
            })
            .collect();
        along_segments(drawn)
    }));
    ch.configure_series_labels()
        .position(corner)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(120, 120, 120))
        .draw()
        .map_err(e)?;
    Ok(())
}

/// Points along a polyline given in axis shares: each segment in steps of at most 2 % of the
/// axes, so that [`emptiest_corner`] sees where lines run, not only where their points are.
fn along_segments(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    const STEP: f64 = 0.02;
    let mut out = Vec::with_capacity(points.len());
    for w in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        let span = (x1 - x0).abs().max((y1 - y0).abs());
        // Non-finite ends are skipped by the corner count; one step then.
        let steps = if span.is_finite() {
            (span / STEP).ceil().clamp(1.0, 100.0) as usize
        } else {
            1
        };
        for k in 0..steps {
            let t = k as f64 / steps as f64;
            out.push((x0 + (x1 - x0) * t, y0 + (y1 - y0) * t));
        }
    }
    out.extend(points.last().copied());
    out
}

/// The corner of a plot where the legend covers the fewest data points: each corner's box (30 %
/// of the width, 35 % of the height, roomier than a legend of a few lines) counts the points in
/// it, given as shares of the axes (0..=1, origin lower left). Ties go to upper right, upper
/// left, lower right, lower left, in that order.
fn emptiest_corner(points: impl Iterator<Item = (f64, f64)>) -> SeriesLabelPosition {
    // (corner, on the right, at the top)
    let corners = [
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let mut counts = [0usize; 4];
    for (x, y) in points.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        for (n, &(_, right, top)) in counts.iter_mut().zip(&corners) {
            let in_x = if right { x >= 0.7 } else { x <= 0.3 };
            let in_y = if top { y >= 0.65 } else { y <= 0.35 };
            *n += usize::from(in_x && in_y);
        }
    }
    let best = (0..corners.len()).min_by_key(|&i| counts[i]).unwrap_or(0);
    corners[best].0.clone()
}

/// The waits under this many seconds are drawn at it on the wait CDF's log axis.
const WAIT_AXIS_FLOOR_S: f64 = 0.1;

/// The wait-time CDF: `lines` of (wait s, % of pods) on a log wait axis from
/// [`WAIT_AXIS_FLOOR_S`], so that the few long waits are not squeezed against the many
/// immediate ones, and a percent axis that starts at the tens below the smallest share of pods
/// placed at once (it is named on the axis).
fn draw_wait_cdf<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    lines: &[Line],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE).map_err(e)?;
    let lo = WAIT_AXIS_FLOOR_S;
    let wmax = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .filter(|x| x.is_finite())
        .fold(0.0f64, f64::max);
    let hi = if wmax > lo { wmax * 1.5 } else { 1.0 };
    // The share of pods placed within the floor, for the line where it is smallest.
    let at_once = lines
        .iter()
        .map(|l| {
            l.points
                .iter()
                .filter(|p| p.0 <= lo)
                .map(|p| p.1)
                .fold(0.0f64, f64::max)
        })
        .fold(100.0f64, f64::min);
    let ya = ((at_once / 10.0).floor() * 10.0).clamp(0.0, 90.0);
    let ydesc = if ya > 0.0 {
        format!("Pods that waited at most this long (%, from {ya:.0} %)")
    } else {
        "Pods that waited at most this long (%)".to_string()
    };
    let mut ch = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d((lo..hi).log_scale(), ya..100.0)
        .map_err(e)?;
    let (la, lb) = (lo.ln(), hi.ln());
    plot_lines(
        &mut ch,
        &format!("Wait (s, log scale; waits under {lo} s at the left edge)"),
        &ydesc,
        lines,
        |x, y| (x.max(lo), y.max(ya)),
        |x, y| {
            (
                (x.ln() - la) / (lb - la).max(f64::MIN_POSITIVE),
                (y - ya) / (100.0 - ya).max(f64::MIN_POSITIVE),
            )
        },
    )
}

macro_rules! render_both {
    ($out:expr, $size:expr, |$area:ident| $body:block) => {{
        let png = $out.with_extension("png");
        {
            let $area = BitMapBackend::new(&png, $size).into_drawing_area();
            $body
            $area.present().map_err(e)?;
        }
        let svg = $out.with_extension("svg");
        {
            let $area = SVGBackend::new(&svg, $size).into_drawing_area();
            $body
            $area.present().map_err(e)?;
        }
    }};
}

/// The runs of policy `p` in variant `v`, one per seed, in the order they were recorded.
fn runs_of<'a>(res: &'a Results, v: &str, p: &str) -> Vec<&'a RunRecord> {
    res.runs
        .iter()
        .filter(|r| r.variant == v && r.policy == p)
        .collect()
}

fn first_seed_runs<'a>(res: &'a Results, v: &str) -> Vec<(usize, &'a RunRecord)> {
    res.policies
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            runs_of(res, v, p)
                .into_iter()
                .min_by_key(|r| r.seed)
                .map(|r| (i, r))
        })
        .collect()
}

/// Draw every plot of one variant into `dir`; returns the file stems written.
pub fn plots(
    res: &Results,
    v: &str,
    dir: &Path,
    prefix: &str,
) -> Result<Vec<(String, String)>, String> {
    ensure_font()?;
    let mut written = Vec::new();
    let runs = first_seed_runs(res, v);
    let max_t = runs
        .iter()
        .flat_map(|(_, r)| r.series.last().map(|s| s.t))
        .fold(0.0f64, f64::max);
    let (tu, tname) = time_unit(max_t);
    let series_lines = |f: &dyn Fn(&super::engine::Sample) -> f64| -> Vec<Line> {
        runs.iter()
            .map(|(i, r)| Line {
                name: r.policy.clone(),
                color: color(*i),
                points: r.series.iter().map(|s| (s.t / tu, f(s))).collect(),
            })
            .collect()
    };
    let seed_note = if res.seeds.len() > 1 {
        format!(" (seed {})", res.seeds.first().copied().unwrap_or(0))
    } else {
        String::new()
    };

    // 1. allocation vs arrived workload
    let name = format!("{prefix}allocation_vs_arrived");
    let out = dir.join(&name);
    let lines: Vec<Line> = runs
        .iter()
        .map(|(i, r)| Line {
            name: r.policy.clone(),
            color: color(*i),
            points: r
                .per_arrival
                .iter()
                .map(|&(a, al)| (a, al * 100.0))
                .collect(),
        })
        .collect();
    render_both!(out, (1000, 620), |area| {
        draw_lines(
            &area,
            &format!("GPU compute allocated vs workload arrived{seed_note}"),
            "Arrived GPU demand, cumulative (% of cluster GPU capacity)",
            "Compute allocated (% of capacity)",
            &lines,
            Some((0.0, 100.0)),
            None,
        )?;
    });
    written.push((name, "Allocation against arrived workload".into()));

    // 2. allocation over time
    let name = format!("{prefix}allocation_over_time");
    let out = dir.join(&name);
    let lines = series_lines(&|s| s.allocation * 100.0);
    render_both!(out, (1000, 620), |area| {
        draw_lines(
            &area,
            &format!("GPU compute allocated over time{seed_note}"),
            &format!("Virtual time ({tname})"),
            "Compute allocated (% of capacity)",
            &lines,
            Some((0.0, 100.0)),
            None,
        )?;
    });
    written.push((name, "Allocation over time".into()));

    // 3. fragmentation over time
    let name = format!("{prefix}fragmentation_over_time");
    let out = dir.join(&name);
    let lines = series_lines(&|s| s.fragmentation * 100.0);
    render_both!(out, (1000, 620), |area| {
        draw_lines(
            &area,
            &format!("Fragmentation (FGD measure, scenario request mix){seed_note}"),
            &format!("Virtual time ({tname})"),
            "Fragmented GPU (% of capacity)",
            &lines,
            None,
            None,
        )?;
    });
    written.push((name, "Fragmentation over time".into()));

    // 4. pending queue
    let name = format!("{prefix}pending_over_time");
    let out = dir.join(&name);
    let lines = series_lines(&|s| s.pending as f64);
    render_both!(out, (1000, 620), |area| {
        draw_lines(
            &area,
            &format!("Pending pods{seed_note}"),
            &format!("Virtual time ({tname})"),
            "Pending pods (count)",
            &lines,
            None,
            None,
        )?;
    });
    written.push((name, "Pending queue length".into()));

    // 5. wait CDF (mean quantiles over seeds)
    let name = format!("{prefix}wait_cdf");
    let out = dir.join(&name);
    let mut lines = Vec::new();
    for (i, p) in res.policies.iter().enumerate() {
        let mine = runs_of(res, v, p);
        if mine.is_empty() {
            continue;
        }
        let pts: Vec<(f64, f64)> = (0..=100)
            .filter_map(|q| {
                let vals: Vec<f64> = mine
                    .iter()
                    .filter_map(|r| r.wait_quantiles.get(q).copied())
                    .filter(|x| x.is_finite())
                    .collect();
                (!vals.is_empty()).then(|| (vals.iter().sum::<f64>() / vals.len() as f64, q as f64))
            })
            .collect();
        lines.push(Line {
            name: p.clone(),
            color: color(i),
            points: pts,
        });
    }
    render_both!(out, (1000, 620), |area| {
        draw_wait_cdf(
            &area,
            "Wait from arrival to first placement (CDF, mean quantiles over seeds)",
            &lines,
        )?;
    });
    written.push((name, "Wait-time CDF".into()));

    // 6. per-policy bars with error bars over seeds
    let name = format!("{prefix}policy_bars");
    let out = dir.join(&name);
    let panels = [
        MetricName::AllocationRatio,
        MetricName::Fragmentation,
        MetricName::UnallocatedGpus,
        MetricName::WaitP99,
    ];
    render_both!(out, (1200, 720), |area| {
        area.fill(&WHITE).map_err(e)?;
        let (top, rest) = area.split_vertically(40);
        top.draw(&Text::new(
            format!(
                "Per-policy outcomes, mean ± sd over {} seed(s)",
                res.seeds.len()
            ),
            (20, 10),
            ("sans-serif", 22),
        ))
        .map_err(e)?;
        let cells = rest.split_evenly((2, 2));
        for (cell, m) in cells.iter().zip(panels) {
            bars_panel(cell, res, v, m)?;
        }
    });
    written.push((name, "Per-policy bars (error bars: sd over seeds)".into()));

    // 7. unschedulable reasons
    let name = format!("{prefix}unschedulable_reasons");
    let out = dir.join(&name);
    render_both!(out, (1000, 620), |area| {
        reasons_chart(&area, res, v)?;
    });
    written.push((name, "Unschedulable reasons".into()));
    Ok(written)
}

fn bars_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    res: &Results,
    v: &str,
    m: MetricName,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let mut vals = Vec::new();
    for (i, p) in res.policies.iter().enumerate() {
        let st = res
            .summary
            .get(v)
            .and_then(|x| x.get(p))
            .and_then(|x| x.get(m.as_str()))
            .copied();
        let scale = if m.is_ratio() { 100.0 } else { 1.0 };
        if let Some(st) = st {
            let mean = if st.mean.is_finite() {
                st.mean * scale
            } else {
                0.0
            };
            let sd = if st.sd.is_finite() {
                st.sd * scale
            } else {
                0.0
            };
            vals.push((i, p.clone(), mean, sd));
        }
    }
    let ymax = vals.iter().map(|x| x.2 + x.3).fold(0.0f64, f64::max);
    let n = vals.len().max(1);
    let unit = if m.is_ratio() {
        "%".to_string()
    } else {
        m.unit().to_string()
    };
    let ydesc = if unit.is_empty() {
        m.as_str().to_string()
    } else {
        format!("{} ({unit})", m.as_str())
    };
    let better = if m.higher_is_better() {
        "higher is better"
    } else {
        "lower is better"
    };
    let mut ch = ChartBuilder::on(area)
        .caption(format!("{} — {better}", m.as_str()), ("sans-serif", 17))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(65)
        .build_cartesian_2d(0f64..n as f64, 0f64..(ymax * 1.15).max(1e-6))
        .map_err(e)?;
    let names: Vec<String> = vals.iter().map(|x| x.1.clone()).collect();
    ch.configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 && i < names.len() {
                names[i].clone()
            } else {
                String::new()
            }
        })
        .y_desc(ydesc)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(e)?;
    for (k, (i, _, mean, sd)) in vals.iter().enumerate() {
        let x0 = k as f64 + 0.2;
        let c = color(*i);
        ch.draw_series(std::iter::once(Rectangle::new(
            [(x0, 0.0), (x0 + 0.6, *mean)],
            c.filled(),
        )))
        .map_err(e)?;
        let xm = k as f64 + 0.5;
        ch.draw_series(std::iter::once(PathElement::new(
            vec![(xm, mean - sd), (xm, mean + sd)],
            BLACK.stroke_width(2),
        )))
        .map_err(e)?;
        for y in [mean - sd, mean + sd] {
            ch.draw_series(std::iter::once(PathElement::new(
                vec![(xm - 0.08, y), (xm + 0.08, y)],
                BLACK.stroke_width(2),
            )))
            .map_err(e)?;
        }
    }
    Ok(())
}

fn reasons_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    res: &Results,
    v: &str,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE).map_err(e)?;
    // reason → policy index → mean count over seeds
    let mut m: BTreeMap<String, BTreeMap<usize, f64>> = BTreeMap::new();
    for (i, p) in res.policies.iter().enumerate() {
        let mine = runs_of(res, v, p);
        let n = mine.len().max(1) as f64;
        for r in &mine {
            for (k, c) in &r.reasons {
                *m.entry(k.clone()).or_default().entry(i).or_insert(0.0) += *c as f64 / n;
            }
        }
    }
    let reasons: Vec<String> = m.keys().cloned().collect();
    let ymax = m
        .values()
        .flat_map(|x| x.values())
        .fold(0.0f64, |a, &b| a.max(b));
    let nr = reasons.len().max(1);
    let np = res.policies.len().max(1);
    let mut ch = ChartBuilder::on(area)
        .caption(
            "Unschedulable attempts by main reason (mean over seeds)",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(48)
        .y_label_area_size(75)
        .build_cartesian_2d(0f64..nr as f64, 0f64..(ymax * 1.15).max(1.0))
        .map_err(e)?;
    let names = reasons.clone();
    ch.configure_mesh()
        .disable_x_mesh()
        .x_labels(nr * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 && i < names.len() {
                names[i].clone()
            } else {
                String::new()
            }
        })
        .x_desc("Main reason of the attempt (HAMi reason words)")
        .y_desc("Attempts (count)")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(e)?;
    let w = 0.8 / np as f64;
    for (i, p) in res.policies.iter().enumerate() {
        let c = color(i);
        let bars: Vec<Rectangle<(f64, f64)>> = reasons
            .iter()
            .enumerate()
            .filter_map(|(ri, r)| {
                let val = m.get(r).and_then(|x| x.get(&i)).copied()?;
                let x0 = ri as f64 + 0.1 + w * i as f64;
                Some(Rectangle::new([(x0, 0.0), (x0 + w * 0.9, val)], c.filled()))
            })
            .collect();
        ch.draw_series(bars)
            .map_err(e)?
            .label(p.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], c.filled()));
    }
    if reasons.is_empty() {
        area.draw(&Text::new(
            "no pod was ever unschedulable",
            (400, 300),
            ("sans-serif", 20),
        ))
        .map_err(e)?;
    } else {
        ch.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(120, 120, 120))
            .draw()
            .map_err(e)?;
    }
    Ok(())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Write `results.json`, `report.md`, `report.html` and the plots into `dir`.
pub fn write_all(sc: &Scenario, res: &Results, dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|x| format!("{}: {x}", dir.display()))?;
    let mut files = Vec::new();
    let json = serde_json::to_string_pretty(res).map_err(|x| x.to_string())?;
    let p = dir.join("results.json");
    std::fs::write(&p, json).map_err(|x| format!("{}: {x}", p.display()))?;
    files.push(p);
    let mut md = String::new();
    let mut html = String::new();
    let _ = writeln!(md, "# Scenario `{}`\n", res.scenario);
    if !res.description.is_empty() {
        let _ = writeln!(md, "{}\n", res.description.trim());
    }
    let checked = if sc.check_every <= 1 {
        "the checker ran in full after every event".to_string()
    } else {
        format!(
            "the checker ran after every event (in full every {} events, on what each event \
             touched in between)",
            sc.check_every
        )
    };
    let _ = writeln!(
        md,
        "Policies: {}. Seeds: {:?}. Every decision was taken by the hami-core control loop on \
         Kubernetes Node/Pod objects; {checked}. Generated by `hami sim run {}`.\n",
        res.policies.join(", "),
        res.seeds,
        sc.path.display()
    );
    let _ = writeln!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>hami sim: {}</title>\
         <style>body{{font-family:sans-serif;max-width:1150px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}.pass{{color:#197a1f}}.fail{{color:#b00020;font-weight:bold}}\
         svg{{max-width:100%;height:auto}}</style></head><body><h1>Scenario <code>{}</code></h1><p>{}</p>\
         <p>Policies: {}. Seeds: {:?}.</p>",
        html_escape(&res.scenario),
        html_escape(&res.scenario),
        html_escape(res.description.trim()),
        html_escape(&res.policies.join(", ")),
        res.seeds
    );
    let cols: Vec<MetricName> = {
        let mut c = sc.table.clone();
        for m in [
            MetricName::WaitP50,
            MetricName::WaitP95,
            MetricName::MemoryRatio,
            MetricName::CardsRatio,
        ] {
            if !c.contains(&m) {
                c.push(m);
            }
        }
        c
    };
    for v in &res.variants {
        let prefix = if res.variants.len() > 1 {
            format!("{}_", slug(v))
        } else {
            String::new()
        };
        let _ = writeln!(md, "## {v}\n");
        let _ = writeln!(html, "<h2>{}</h2>", html_escape(v));
        let table = md_table(res, v, &cols);
        let _ = writeln!(md, "{table}");
        let _ = writeln!(html, "{}", md_table_to_html(&table));
        if let Some(t) = pool_table(res, v) {
            let _ = writeln!(
                md,
                "Per-pool allocation, compute / memory (time average):\n\n{t}"
            );
            let _ = writeln!(
                html,
                "<p>Per-pool allocation, compute / memory (time average):</p>{}",
                md_table_to_html(&t)
            );
        }
        for (stem, title) in plots(res, v, dir, &prefix)? {
            let _ = writeln!(md, "### {title}\n\n![{title}]({stem}.png)\n");
            let svg = std::fs::read_to_string(dir.join(format!("{stem}.svg"))).unwrap_or_default();
            let svg = svg.trim_start_matches(|c| c != '<');
            let svg = match svg.find("<svg") {
                Some(i) => &svg[i..],
                None => svg,
            };
            let _ = writeln!(html, "<h3>{}</h3>{svg}", html_escape(&title));
            files.push(dir.join(format!("{stem}.png")));
            files.push(dir.join(format!("{stem}.svg")));
        }
    }
    if !res.verdicts.is_empty() {
        let _ = writeln!(md, "## Expectations\n");
        let _ = writeln!(html, "<h2>Expectations</h2><ul>");
        for v in &res.verdicts {
            let mark = if v.pass { "PASS" } else { "FAIL" };
            let _ = writeln!(md, "- **{mark}** `{}` — {}", v.expectation, v.detail);
            let _ = writeln!(
                html,
                "<li><span class=\"{}\">{mark}</span> <code>{}</code> — {}</li>",
                if v.pass { "pass" } else { "fail" },
                html_escape(&v.expectation),
                html_escape(&v.detail)
            );
        }
        let _ = writeln!(html, "</ul>");
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "## Metrics\n");
    for m in MetricName::ALL {
        let _ = writeln!(md, "- `{}`: {}", m.as_str(), m.describe());
    }
    let _ = writeln!(html, "</body></html>");
    let p = dir.join("report.md");
    std::fs::write(&p, md).map_err(|x| format!("{}: {x}", p.display()))?;
    files.push(p);
    let p = dir.join("report.html");
    std::fs::write(&p, html).map_err(|x| format!("{}: {x}", p.display()))?;
    files.push(p);
    Ok(files)
}

/// The per-pool table of variant `v` (markdown): a row per pool, a `compute / memory` cell per
/// policy, each the mean over the policy's seeds (memory `n/a` for results written before it
/// was recorded). `None` for a cluster of one pool, whose figures are the run's own.
fn pool_table(res: &Results, v: &str) -> Option<String> {
    // Results written before the memory share existed have none: their cells say "n/a".
    let has_memory = res.runs.iter().any(|r| !r.pools_memory.is_empty());
    // pool → per policy (compute, memory), averaged over that policy's runs.
    let mut m: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for (pi, p) in res.policies.iter().enumerate() {
        let mine = runs_of(res, v, p);
        let n = mine.len().max(1) as f64;
        for r in &mine {
            for (k, x) in &r.pools {
                let row = m.entry(k.as_str()).or_default();
                row.resize(res.policies.len(), (0.0, 0.0));
                row[pi].0 += x / n;
                row[pi].1 += r.pools_memory.get(k).copied().unwrap_or(0.0) / n;
            }
        }
    }
    if m.len() < 2 {
        return None;
    }
    let mut t = String::from("| pool |");
    for p in &res.policies {
        let _ = write!(t, " {p} |");
    }
    let _ = writeln!(t, "\n|---|{}", "---:|".repeat(res.policies.len()));
    for (pool, xs) in &m {
        let _ = write!(t, "| {pool} |");
        for (c, mem) in xs {
            if has_memory {
                let _ = write!(t, " {:.1}% / {:.1}% |", c * 100.0, mem * 100.0);
            } else {
                let _ = write!(t, " {:.1}% / n/a |", c * 100.0);
            }
        }
        let _ = writeln!(t);
    }
    Some(t)
}

fn md_table_to_html(t: &str) -> String {
    let mut s = String::from("<table>");
    for (i, line) in t.lines().enumerate() {
        if i == 1 {
            continue;
        }
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let tag = if i == 0 { "th" } else { "td" };
        s.push_str("<tr>");
        for c in cells {
            let _ = write!(s, "<{tag}>{}</{tag}>", html_escape(c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_table_says_when_memory_was_not_recorded() {
        let run = |pool_mem: &[(&str, f64)]| RunRecord {
            variant: "v".into(),
            policy: "binpack".into(),
            seed: 1,
            event_log_hash: String::new(),
            metrics: BTreeMap::new(),
            reasons: BTreeMap::new(),
            pools: BTreeMap::from([("a".to_string(), 0.5), ("b".to_string(), 0.25)]),
            pools_memory: pool_mem.iter().map(|(k, x)| (k.to_string(), *x)).collect(),
            wait_quantiles: Vec::new(),
            per_arrival: Vec::new(),
            series: Vec::new(),
            errors: Vec::new(),
        };
        let results = |r: RunRecord| Results {
            schema: "hami-sim/results/v1".into(),
            scenario: "s".into(),
            description: String::new(),
            seeds: vec![1],
            policies: vec!["binpack".into()],
            variants: vec!["v".into()],
            metrics_doc: BTreeMap::new(),
            runs: vec![r],
            summary: BTreeMap::new(),
            verdicts: Vec::new(),
        };
        let new = pool_table(&results(run(&[("a", 0.75), ("b", 0.1)])), "v").unwrap_or_default();
        assert!(new.contains("| a | 50.0% / 75.0% |"), "{new}");
        assert!(new.contains("| b | 25.0% / 10.0% |"), "{new}");
        let old = pool_table(&results(run(&[])), "v").unwrap_or_default();
        assert!(old.contains("| a | 50.0% / n/a |"), "{old}");
    }

    #[test]
    fn the_legend_goes_where_the_data_is_not() {
        // A rising curve leaves the upper left and the lower right empty; of the two, the
        // upper left comes first in the tie order.
        let rising = (0..=100).map(|i| (f64::from(i) / 100.0, f64::from(i) / 100.0));
        let falling = (0..=100).map(|i| (f64::from(i) / 100.0, 1.0 - f64::from(i) / 100.0));
        let low_flat = (0..=100).map(|i| (f64::from(i) / 100.0, 0.2));
        let high_flat = (0..=100).map(|i| (f64::from(i) / 100.0, 0.9));
        let high_then_low = (0..=100).map(|i| {
            let x = f64::from(i) / 100.0;
            (x, if x < 0.5 { 0.9 } else { 0.1 })
        });
        type Case = (&'static str, Vec<(f64, f64)>, SeriesLabelPosition);
        let cases: [Case; 6] = [
            ("rising", rising.collect(), SeriesLabelPosition::UpperLeft),
            (
                "falling",
                falling.collect(),
                SeriesLabelPosition::UpperRight,
            ),
            ("low", low_flat.collect(), SeriesLabelPosition::UpperRight),
            ("high", high_flat.collect(), SeriesLabelPosition::LowerRight),
            (
                "high, then low",
                high_then_low.collect(),
                SeriesLabelPosition::UpperRight,
            ),
            (
                "no data",
                vec![(f64::NAN, 0.5)],
                SeriesLabelPosition::UpperRight,
            ),
        ];
        for (what, pts, want) in cases {
            assert_eq!(emptiest_corner(pts.into_iter()), want, "{what}");
        }
        // Two points and a jump between them: the points alone leave the upper left empty,
        // the line between them crosses it.
        let jump = vec![(0.0, 0.5), (0.5, 1.0)];
        assert_eq!(
            emptiest_corner(jump.clone().into_iter()),
            SeriesLabelPosition::UpperRight
        );
        let line = along_segments(jump);
        assert_eq!(line.first(), Some(&(0.0, 0.5)));
        assert_eq!(line.last(), Some(&(0.5, 1.0)));
        assert!(line.iter().any(|&(x, y)| x <= 0.3 && y >= 0.65), "{line:?}");
    }
}
