//! The report's charts, drawn by plotters on its SVG backend: each function
//! returns one `<svg>` element to inline in the page. Colours are the
//! Okabe-Ito palette (distinguishable with the common colour-vision
//! deficiencies); every chart has a title and labelled axes.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::ReportError;
use super::format;

/// Okabe & Ito (2008), "Color Universal Design": black first, then the
/// seven colours.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(230, 159, 0),   // orange
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(240, 228, 66),  // yellow
    RGBColor(0, 0, 0),       // black
];

const WIDTH: u32 = 720;
const HEIGHT: u32 = 320;
const FONT: &str = "sans-serif";

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn chart_error<E: std::fmt::Display>(e: E) -> ReportError {
    ReportError::Chart(e.to_string())
}

/// Draws on an SVG canvas of `size` and returns the SVG text.
fn svg(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), ReportError>,
) -> Result<String, ReportError> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        draw(&root)?;
        root.present().map_err(chart_error)?;
    }
    Ok(text)
}

/// One line of a line chart: a value (or a gap) per x label.
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
    /// A shaded band around the line (e.g. a margin of error): low, high.
    pub band: Option<Vec<Option<(f64, f64)>>>,
    /// Points drawn hollow (e.g. provisional months).
    pub hollow: Vec<bool>,
}

impl Series {
    pub fn new(name: impl Into<String>, values: Vec<Option<f64>>) -> Self {
        let hollow = vec![false; values.len()];
        Series {
            name: name.into(),
            values,
            band: None,
            hollow,
        }
    }
}

/// The y range holding every value and band, with some room.
fn value_range<'a>(values: impl Iterator<Item = &'a f64>, from_zero: bool) -> (f64, f64) {
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    for &v in values.filter(|v| v.is_finite()) {
        low = low.min(v);
        high = high.max(v);
    }
    if !low.is_finite() {
        return (0.0, 1.0);
    }
    if from_zero {
        low = low.min(0.0);
        high = high.max(0.0);
    }
    let pad = ((high - low) * 0.08).max(if high == low { 1.0 } else { 0.0 });
    (
        if from_zero && low >= 0.0 {
            0.0
        } else {
            low - pad
        },
        high + pad,
    )
}

/// Lines over labelled x positions (months, periods), with optional bands
/// and hollow points.
pub fn lines(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    labels: &[String],
    series: &[Series],
    from_zero: bool,
) -> Result<String, ReportError> {
    let all = series.iter().flat_map(|s| {
        let band = s.band.iter().flatten().flatten().flat_map(|b| [&b.0, &b.1]);
        s.values.iter().flatten().chain(band)
    });
    let (low, high) = value_range(all, from_zero);
    let n = labels.len().max(1);
    svg((WIDTH, HEIGHT), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(46)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), low..high)
            .map_err(chart_error)?;
        let label_of = |x: &f64| label_at(labels, *x, |l| l.clone());
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(n.min(12))
            .x_label_formatter(&label_of)
            .y_label_formatter(&|y| format::axis(*y))
            .axis_desc_style((FONT, 14))
            .label_style((FONT, 12))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(chart_error)?;
        for (i, s) in series.iter().enumerate() {
            let colour = colour(i);
            if let Some(band) = &s.band {
                for run in runs(band.iter().enumerate().map(|(x, b)| b.map(|b| (x, b)))) {
                    let mut outline: Vec<(f64, f64)> =
                        run.iter().map(|&(x, (_, hi))| (x as f64, hi)).collect();
                    outline.extend(run.iter().rev().map(|&(x, (lo, _))| (x as f64, lo)));
                    chart
                        .draw_series(std::iter::once(Polygon::new(outline, colour.mix(0.18))))
                        .map_err(chart_error)?;
                }
            }
            let points = s.values.iter().enumerate().map(|(x, v)| v.map(|v| (x, v)));
            let mut first = true;
            for run in runs(points) {
                let line = LineSeries::new(
                    run.iter().map(|&(x, v)| (x as f64, v)),
                    colour.stroke_width(2),
                );
                let drawn = chart.draw_series(line).map_err(chart_error)?;
                if first {
                    drawn.label(s.name.clone()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                    });
                    first = false;
                }
            }
            let marks = s.values.iter().enumerate().filter_map(|(x, v)| {
                let v = (*v)?;
                let hollow = s.hollow.get(x).copied().unwrap_or(false);
                Some(match hollow {
                    true => Circle::new((x as f64, v), 4, WHITE.filled()),
                    false => Circle::new((x as f64, v), 2, colour.filled()),
                })
            });
            chart.draw_series(marks).map_err(chart_error)?;
            let rings = s.values.iter().enumerate().filter_map(|(x, v)| {
                let hollow = s.hollow.get(x).copied().unwrap_or(false);
                let v = v.filter(|_| hollow)?;
                Some(Circle::new((x as f64, v), 4, colour.stroke_width(2)))
            });
            chart.draw_series(rings).map_err(chart_error)?;
        }
        if series.len() > 1 || series.iter().any(|s| s.band.is_some()) {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font((FONT, 12))
                .draw()
                .map_err(chart_error)?;
        }
        Ok(())
    })
}

/// The label of the item at an axis position: items sit at 0, 1, 2, ...;
/// a tick between them has no label.
fn label_at<T>(items: &[T], position: f64, label: impl Fn(&T) -> String) -> String {
    let i = position.round();
    match (i - position).abs() < 1e-6 && i >= 0.0 {
        true => items.get(i as usize).map(label).unwrap_or_default(),
        false => String::new(),
    }
}

/// Consecutive present values, as runs (a gap breaks a line).
fn runs<T: Copy>(items: impl Iterator<Item = Option<T>>) -> Vec<Vec<T>> {
    let mut runs = vec![Vec::new()];
    for item in items {
        match item {
            Some(item) => runs.last_mut().expect("one run").push(item),
            None if runs.last().is_some_and(|r| !r.is_empty()) => runs.push(Vec::new()),
            None => {}
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

/// One bar of a bar chart, with an optional interval drawn as a whisker.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub interval: Option<(f64, f64)>,
}

/// Vertical bars, one per label, each in its own colour.
pub fn bars(title: &str, x_desc: &str, y_desc: &str, bars: &[Bar]) -> Result<String, ReportError> {
    let all = bars.iter().flat_map(|b| {
        let interval = b.interval.iter().flat_map(|i| [&i.0, &i.1]);
        std::iter::once(&b.value).chain(interval)
    });
    let (low, high) = value_range(all, true);
    let n = bars.len().max(1);
    svg((WIDTH, HEIGHT), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(46)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), low..high)
            .map_err(chart_error)?;
        let label_of = |x: &f64| label_at(bars, *x, |b| b.label.clone());
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(n)
            .x_label_formatter(&label_of)
            .y_label_formatter(&|y| format::axis(*y))
            .axis_desc_style((FONT, 14))
            .label_style((FONT, 12))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(chart_error)?;
        let rects = bars.iter().enumerate().map(|(i, b)| {
            let x = i as f64;
            Rectangle::new([(x - 0.35, 0.0), (x + 0.35, b.value)], colour(i).filled())
        });
        chart.draw_series(rects).map_err(chart_error)?;
        let whiskers = bars.iter().enumerate().filter_map(|(i, b)| {
            let (lo, hi) = b.interval?;
            let x = i as f64;
            Some(PathElement::new(
                vec![(x, lo), (x, hi)],
                BLACK.stroke_width(2),
            ))
        });
        chart.draw_series(whiskers).map_err(chart_error)?;
        Ok(())
    })
}

/// One step of a waterfall: a change, or a total drawn from zero.
pub struct Step {
    pub label: String,
    pub value: f64,
    pub total: bool,
}

/// A waterfall (bridge): totals from zero, changes floating from the
/// running total, increases and decreases in two colours.
pub fn waterfall(title: &str, y_desc: &str, steps: &[Step]) -> Result<String, ReportError> {
    let mut spans = Vec::new();
    let mut running = 0.0;
    for step in steps {
        let (from, to) = match step.total {
            true => (0.0, step.value),
            false => (running, running + step.value),
        };
        running = to;
        spans.push((from, to));
    }
    let (low, high) = value_range(spans.iter().flat_map(|s| [&s.0, &s.1]), true);
    let n = steps.len().max(1);
    svg((WIDTH, HEIGHT), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(46)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), low..high)
            .map_err(chart_error)?;
        let label_of = |x: &f64| label_at(steps, *x, |s| s.label.clone());
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("movement")
            .y_desc(y_desc)
            .x_labels(n)
            .x_label_formatter(&label_of)
            .y_label_formatter(&|y| format::axis(*y))
            .axis_desc_style((FONT, 14))
            .label_style((FONT, 12))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(chart_error)?;
        let rects = steps
            .iter()
            .zip(&spans)
            .enumerate()
            .map(|(i, (step, &(from, to)))| {
                let fill = match (step.total, to >= from) {
                    (true, _) => colour(0),
                    (false, true) => colour(2),
                    (false, false) => colour(5),
                };
                let x = i as f64;
                Rectangle::new([(x - 0.35, from), (x + 0.35, to)], fill.filled())
            });
        chart.draw_series(rects).map_err(chart_error)?;
        Ok(())
    })
}

/// A heatmap of shares (0..1) over rows and columns, darker = higher; cells
/// without a value stay blank.
pub fn heatmap(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    rows: &[String],
    columns: usize,
    values: &[Vec<Option<f64>>],
) -> Result<String, ReportError> {
    let height = (HEIGHT as usize).max(80 + 14 * rows.len()) as u32;
    let n_rows = rows.len().max(1);
    svg((WIDTH, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(
                -0.5f64..(columns.max(1) as f64 - 0.5),
                (n_rows as f64 - 0.5)..-0.5f64,
            )
            .map_err(chart_error)?;
        let row_of = |y: &f64| label_at(rows, *y, |l| l.clone());
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .y_labels(n_rows.min(24))
            .y_label_formatter(&row_of)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .axis_desc_style((FONT, 14))
            .label_style((FONT, 11))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(chart_error)?;
        let cells = values.iter().enumerate().flat_map(|(r, row)| {
            row.iter().enumerate().filter_map(move |(c, v)| {
                let v = (*v)?.clamp(0.0, 1.0);
                let (x, y) = (c as f64, r as f64);
                // white to the palette's blue
                let mix = |full: u8| (255.0 - (255.0 - full as f64) * v).round() as u8;
                let fill = RGBColor(mix(0), mix(114), mix(178));
                Some(Rectangle::new(
                    [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                    fill.filled(),
                ))
            })
        });
        chart.draw_series(cells).map_err(chart_error)?;
        Ok(())
    })
}

/// One horizontal stacked bar: a label and its parts (in `parts` order).
pub struct Stack {
    pub label: String,
    pub parts: Vec<f64>,
}

/// Horizontal stacked bars, one per row, part `p` named `part_names[p]`
/// and coloured `PALETTE[colours[p]]`.
pub fn stacked_rows(
    title: &str,
    x_desc: &str,
    part_names: &[&str],
    colours: &[usize],
    rows: &[Stack],
) -> Result<String, ReportError> {
    let totals = rows
        .iter()
        .map(|r| r.parts.iter().map(|p| p.max(0.0)).sum::<f64>());
    let high = totals.fold(1.0f64, f64::max) * 1.05;
    let height = (120 + 18 * rows.len()) as u32;
    let n = rows.len().max(1);
    svg((WIDTH, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(100)
            .build_cartesian_2d(0f64..high, (n as f64 - 0.5)..-0.5f64)
            .map_err(chart_error)?;
        let row_of = |y: &f64| label_at(rows, *y, |r| r.label.clone());
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc(x_desc)
            .y_labels(n)
            .y_label_formatter(&row_of)
            .x_label_formatter(&|x| format::axis(*x))
            .axis_desc_style((FONT, 14))
            .label_style((FONT, 11))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(chart_error)?;
        for (p, name) in part_names.iter().enumerate() {
            let segments = rows.iter().enumerate().map(|(r, row)| {
                let start: f64 = row.parts[..p].iter().map(|v| v.max(0.0)).sum();
                let width = row.parts.get(p).copied().unwrap_or(0.0).max(0.0);
                let y = r as f64;
                let fill = colour(colours.get(p).copied().unwrap_or(p));
                Rectangle::new(
                    [(start, y - 0.35), (start + width, y + 0.35)],
                    fill.filled(),
                )
            });
            let c = colour(colours.get(p).copied().unwrap_or(p));
            chart
                .draw_series(segments)
                .map_err(chart_error)?
                .label(*name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 12))
            .draw()
            .map_err(chart_error)?;
        Ok(())
    })
}

/// A path model: factors as boxes in columns (by their longest chain of
/// drivers), arrows from driver to driven labelled with the coefficient.
pub struct Path {
    pub from: String,
    pub to: String,
    pub label: String,
}

pub fn path_diagram(
    title: &str,
    factors: &[String],
    paths: &[Path],
) -> Result<String, ReportError> {
    // A factor's column: 0 without drivers, else one more than its drivers'.
    let mut column = vec![0usize; factors.len()];
    for _ in 0..factors.len() {
        for p in paths {
            let (Some(f), Some(t)) = (index(factors, &p.from), index(factors, &p.to)) else {
                continue;
            };
            column[t] = column[t].max(column[f] + 1);
        }
    }
    let columns = column.iter().max().map_or(1, |m| m + 1);
    let mut rows_in = vec![0usize; columns];
    let mut row = vec![0usize; factors.len()];
    for (i, &c) in column.iter().enumerate() {
        row[i] = rows_in[c];
        rows_in[c] += 1;
    }
    let most = rows_in.iter().copied().max().unwrap_or(1).max(1);
    let (box_w, box_h) = (130i32, 40i32);
    let width = (columns as i32 * 210 + 60).max(WIDTH as i32);
    let height = (most as i32 * 90 + 80).max(260);
    let centre = |i: usize| -> (i32, i32) {
        let c = column[i] as i32;
        let slots = rows_in[column[i]] as i32;
        let x = 40 + box_w / 2 + c * (width - 80 - box_w) / (columns as i32 - 1).max(1);
        let mut y = 50 + (row[i] as i32 * 2 + 1) * (height - 60) / (2 * slots);
        // A chain of single factors zigzags, so that labels do not meet.
        if slots == 1 && columns > 2 {
            y += if column[i].is_multiple_of(2) { -45 } else { 45 };
        }
        (x, y)
    };
    svg((width as u32, height as u32), |root| {
        let title_style =
            TextStyle::from((FONT, 18).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(title.to_string(), (width / 2, 8), title_style))
            .map_err(chart_error)?;
        for p in paths {
            let (Some(f), Some(t)) = (index(factors, &p.from), index(factors, &p.to)) else {
                continue;
            };
            let (a, b) = (centre(f), centre(t));
            let start = edge_point(a, b, box_w, box_h);
            let end = edge_point(b, a, box_w, box_h);
            root.draw(&PathElement::new(
                vec![start, end],
                BLACK.mix(0.7).stroke_width(2),
            ))
            .map_err(chart_error)?;
            root.draw(&Polygon::new(
                arrow_head(start, end),
                BLACK.mix(0.7).filled(),
            ))
            .map_err(chart_error)?;
            let middle = ((start.0 + end.0) / 2, (start.1 + end.1) / 2 - 8);
            let label_style =
                TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
            root.draw(&Text::new(p.label.clone(), middle, label_style))
                .map_err(chart_error)?;
        }
        for (i, name) in factors.iter().enumerate() {
            let (x, y) = centre(i);
            root.draw(&Rectangle::new(
                [
                    (x - box_w / 2, y - box_h / 2),
                    (x + box_w / 2, y + box_h / 2),
                ],
                colour(4).mix(0.35).filled(),
            ))
            .map_err(chart_error)?;
            root.draw(&Rectangle::new(
                [
                    (x - box_w / 2, y - box_h / 2),
                    (x + box_w / 2, y + box_h / 2),
                ],
                colour(0).stroke_width(2),
            ))
            .map_err(chart_error)?;
            let style =
                TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
            root.draw(&Text::new(name.clone(), (x, y), style))
                .map_err(chart_error)?;
        }
        Ok(())
    })
}

fn index(factors: &[String], name: &str) -> Option<usize> {
    factors.iter().position(|f| f == name)
}

/// Where the segment from the centre `from` towards `to` leaves a box.
fn edge_point(from: (i32, i32), to: (i32, i32), w: i32, h: i32) -> (i32, i32) {
    let (dx, dy) = ((to.0 - from.0) as f64, (to.1 - from.1) as f64);
    if dx == 0.0 && dy == 0.0 {
        return from;
    }
    let sx = if dx == 0.0 {
        f64::INFINITY
    } else {
        (w as f64 / 2.0) / dx.abs()
    };
    let sy = if dy == 0.0 {
        f64::INFINITY
    } else {
        (h as f64 / 2.0) / dy.abs()
    };
    let s = sx.min(sy);
    (from.0 + (dx * s) as i32, from.1 + (dy * s) as i32)
}

/// A filled triangle at `end`, pointing away from `start`.
fn arrow_head(start: (i32, i32), end: (i32, i32)) -> Vec<(i32, i32)> {
    let (dx, dy) = ((end.0 - start.0) as f64, (end.1 - start.1) as f64);
    let length = (dx * dx + dy * dy).sqrt().max(1.0);
    let (ux, uy) = (dx / length, dy / length);
    let back = (end.0 as f64 - 10.0 * ux, end.1 as f64 - 10.0 * uy);
    vec![
        end,
        ((back.0 - 5.0 * uy) as i32, (back.1 + 5.0 * ux) as i32),
        ((back.0 + 5.0 * uy) as i32, (back.1 - 5.0 * ux) as i32),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_break_at_gaps() {
        let items = [Some(1), None, Some(2), Some(3), None, None, Some(4)];
        assert_eq!(runs(items.into_iter()), vec![vec![1], vec![2, 3], vec![4]]);
        assert!(runs(std::iter::empty::<Option<i32>>()).is_empty());
    }

    #[test]
    fn charts_are_svg_with_their_title() {
        let labels: Vec<String> = ["2026-01", "2026-02", "2026-03"].map(String::from).to_vec();
        let mut s = Series::new("all", vec![Some(1.0), None, Some(3.0)]);
        s.band = Some(vec![Some((0.5, 1.5)), None, Some((2.0, 4.0))]);
        let svg = lines("NPS & margin", "month", "NPS", &labels, &[s], false).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("NPS &amp; margin"),
            "{svg}"
        );
        let diagram = path_diagram(
            "model",
            &["a".into(), "b".into()],
            &[Path {
                from: "a".into(),
                to: "b".into(),
                label: "0.50".into(),
            }],
        )
        .unwrap();
        assert!(
            diagram.contains("<polygon") && diagram.contains("\n0.50\n"),
            "{diagram}"
        );
    }

    #[test]
    fn edge_points_lie_on_the_box() {
        assert_eq!(edge_point((0, 0), (100, 0), 40, 20), (20, 0));
        assert_eq!(edge_point((0, 0), (0, -100), 40, 20), (0, -10));
    }
}
