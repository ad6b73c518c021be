//! Results, bars and the table (terminal and markdown).

use std::fmt::Write as _;

/// What one case measured.
#[derive(Clone, Debug)]
pub enum Metric {
    /// Round trips (or detection times): ns per trip.
    Latency {
        /// Median ns.
        median: u64,
        /// 99th percentile ns.
        p99: u64,
    },
    /// A stream of `size`-byte messages, timed per batch (or per copy, for memcpy).
    Rate {
        /// Message size in bytes.
        size: usize,
        /// Median ns per message.
        median: f64,
        /// ns per message of the slowest batch (the 99th percentile for memcpy).
        worst: f64,
    },
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Row {
    /// Short id, used by ratios and bars.
    pub key: String,
    /// What the case is.
    pub label: String,
    /// Timed iterations (messages for throughput rows).
    pub iters: u64,
    /// The measurement, or why there is none.
    pub metric: Result<Metric, String>,
    /// Key of the row this one is compared with.
    pub vs: Option<String>,
    /// Extra figures (name, value), e.g. allocations per message.
    pub extras: Vec<(String, f64)>,
}

impl Row {
    /// A measured row.
    pub fn new(key: &str, label: impl Into<String>, iters: u64, metric: Metric) -> Row {
        Row {
            key: key.into(),
            label: label.into(),
            iters,
            metric: Ok(metric),
            vs: None,
            extras: Vec::new(),
        }
    }

    /// A row that could not be measured.
    pub fn skipped(key: &str, label: impl Into<String>, why: impl Into<String>) -> Row {
        Row {
            key: key.into(),
            label: label.into(),
            iters: 0,
            metric: Err(why.into()),
            vs: None,
            extras: Vec::new(),
        }
    }

    /// Sets the baseline this row's ratio is taken against.
    pub fn vs(mut self, key: &str) -> Row {
        self.vs = Some(key.into());
        self
    }

    /// Adds an extra figure.
    pub fn extra(mut self, name: &str, value: f64) -> Row {
        self.extras.push((name.into(), value));
        self
    }

    fn extra_value(&self, name: &str) -> Option<f64> {
        self.extras.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

/// Ratio of `row` against `base`: slowdown for latencies (row / base), speed-up for
/// rates (row rate / base rate). `None` if either is missing or they differ in kind.
pub fn ratio(row: &Row, base: &Row) -> Option<f64> {
    match (row.metric.as_ref().ok()?, base.metric.as_ref().ok()?) {
        (Metric::Latency { median: a, .. }, Metric::Latency { median: b, .. }) => {
            Some(*a as f64 / (*b).max(1) as f64)
        }
        (Metric::Rate { median: a, .. }, Metric::Rate { median: b, .. }) => Some(b / a),
        _ => None,
    }
}

/// Ratio of the rows `key` and `base` (see [`ratio`]), if both were measured.
pub fn find_ratio(rows: &[Row], key: &str, base: &str) -> Option<f64> {
    let find = |k: &str| rows.iter().find(|r| r.key == k);
    ratio(find(key)?, find(base)?)
}

/// A bar from design.md section 9.
pub enum Bar {
    /// `case` / `base` (a ratio as in [`ratio`]) must be `<=` (`at_most`) or `>=` `factor`.
    Ratio {
        case: &'static str,
        base: &'static str,
        at_most: bool,
        factor: f64,
        text: &'static str,
    },
    /// An extra figure of `case` (or its median / p99 in µs, for `field` `"median"` /
    /// `"p99"`) must be `<= limit`.
    AtMost {
        case: &'static str,
        field: &'static str,
        limit: f64,
        unit: &'static str,
        text: &'static str,
    },
    /// An extra figure of `case` (as for [`Bar::AtMost`]) must be `>= limit`:
    /// a speed-up, such as the median of per-round throughput ratios.
    AtLeast {
        case: &'static str,
        field: &'static str,
        limit: f64,
        unit: &'static str,
        text: &'static str,
    },
    /// Not measured by this harness.
    Elsewhere {
        text: &'static str,
        why: &'static str,
    },
}

/// The verdict of a bar whose row `k` is missing or was not measured.
fn missing(rows: &[Row], k: &str) -> String {
    match rows.iter().find(|r| r.key == k).map(|r| &r.metric) {
        Some(Err(why)) => format!("not measured ({k}: {why})"),
        _ => format!("not measured ({k} not run)"),
    }
}

/// Verdict of one bar: (bar, measured, verdict).
fn judge(bar: &Bar, rows: &[Row]) -> (String, String, String) {
    let find = |k: &str| rows.iter().find(|r| r.key == k);
    let missing = |k: &str| missing(rows, k);
    match bar {
        Bar::Ratio {
            case,
            base,
            at_most,
            factor,
            text,
        } => {
            let (Some(r), Some(b)) = (find(case), find(base)) else {
                let k = if find(case).is_none() { case } else { base };
                return (text.to_string(), "-".into(), missing(k));
            };
            match ratio(r, b) {
                Some(x) => {
                    let ok = if *at_most { x <= *factor } else { x >= *factor };
                    let verdict = if ok { "met" } else { "MISSED" };
                    (text.to_string(), format!("{x:.2}x"), verdict.into())
                }
                None => {
                    let k = if r.metric.is_err() { case } else { base };
                    (text.to_string(), "-".into(), missing(k))
                }
            }
        }
        Bar::AtMost {
            case,
            field,
            limit,
            unit,
            text,
        } => judge_field(rows, case, field, unit, text, |v| v <= *limit),
        Bar::AtLeast {
            case,
            field,
            limit,
            unit,
            text,
        } => judge_field(rows, case, field, unit, text, |v| v >= *limit),
        Bar::Elsewhere { text, why } => (text.to_string(), "-".into(), why.to_string()),
    }
}

/// Verdict of a bar on one figure of `case` (an extra, or `"median"` /
/// `"p99"` of a latency in µs): met when `ok(value)`.
fn judge_field(
    rows: &[Row],
    case: &str,
    field: &str,
    unit: &str,
    text: &str,
    ok: impl Fn(f64) -> bool,
) -> (String, String, String) {
    let find = |k: &str| rows.iter().find(|r| r.key == k);
    let Some(r) = find(case).filter(|r| r.metric.is_ok()) else {
        return (text.to_string(), "-".into(), missing(rows, case));
    };
    let value = match (field, &r.metric) {
        ("p99", Ok(Metric::Latency { p99, .. })) => Some(*p99 as f64 / 1e3),
        ("median", Ok(Metric::Latency { median, .. })) => Some(*median as f64 / 1e3),
        (f, _) => r.extra_value(f),
    };
    match value {
        Some(v) => {
            let verdict = if ok(v) { "met" } else { "MISSED" };
            (text.to_string(), format!("{v:.3} {unit}"), verdict.into())
        }
        None => (
            text.to_string(),
            "-".into(),
            format!("not measured ({field})"),
        ),
    }
}

/// Human time for ns.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

fn fmt_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else {
        format!("{:.1} k/s", per_s / 1e3)
    }
}

/// The cells of one row: case, iters, median, p99/worst, msg/s, GB/s, ratio, notes.
fn cells(row: &Row, rows: &[Row]) -> [String; 8] {
    let extras = row
        .extras
        .iter()
        .map(|(n, v)| format!("{n} {v:.3}"))
        .collect::<Vec<_>>()
        .join(", ");
    let ratio_cell = row
        .vs
        .as_ref()
        .and_then(|k| rows.iter().find(|r| &r.key == k).map(|b| (k, b)))
        .and_then(|(k, b)| ratio(row, b).map(|x| format!("{x:.2}x {k}")))
        .unwrap_or_default();
    let label = row.label.clone();
    match &row.metric {
        Err(why) => [
            label,
            "-".into(),
            "not measured".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            why.clone(),
        ],
        Ok(Metric::Latency { median, p99 }) => [
            label,
            row.iters.to_string(),
            fmt_ns(*median as f64),
            fmt_ns(*p99 as f64),
            String::new(),
            String::new(),
            ratio_cell,
            extras,
        ],
        Ok(Metric::Rate {
            size,
            median,
            worst,
        }) => {
            let per_s = 1e9 / median;
            [
                label,
                row.iters.to_string(),
                fmt_ns(*median),
                fmt_ns(*worst),
                fmt_rate(per_s),
                format!("{:.2}", per_s * *size as f64 / 1e9),
                ratio_cell,
                extras,
            ]
        }
    }
}

const HEAD: [&str; 8] = [
    "case",
    "iters",
    "median",
    "p99 / slowest",
    "msg/s",
    "GB/s",
    "ratio",
    "notes",
];

/// The results table as aligned text.
pub fn text_table(rows: &[Row]) -> String {
    let all: Vec<[String; 8]> = std::iter::once(HEAD.map(String::from))
        .chain(rows.iter().map(|r| cells(r, rows)))
        .collect();
    let widths: Vec<usize> = (0..8)
        .map(|c| all.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, r) in all.iter().enumerate() {
        for (c, cell) in r.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c == 0 || c == 7 {
                let _ = write!(out, "{cell}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(out, "{}{cell}  ", " ".repeat(pad));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        if i == 0 {
            let total: usize = widths.iter().sum::<usize>() + 2 * 7;
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    out
}

/// The results table as markdown.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut out = format!("| {} |\n", HEAD.join(" | "));
    out.push_str(&format!("|{}\n", "---|".repeat(8)));
    for r in rows {
        out.push_str(&format!("| {} |\n", cells(r, rows).join(" | ")));
    }
    out
}

/// The bars table: (text, markdown).
pub fn bars_tables(bars: &[Bar], rows: &[Row]) -> (String, String) {
    let judged: Vec<_> = bars.iter().map(|b| judge(b, rows)).collect();
    let w0 = judged
        .iter()
        .map(|j| j.0.chars().count())
        .max()
        .unwrap_or(0);
    let w1 = judged
        .iter()
        .map(|j| j.1.chars().count())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    let mut md = String::from("| bar | measured | verdict |\n|---|---|---|\n");
    for (bar, value, verdict) in &judged {
        let pad0 = w0 - bar.chars().count();
        let pad1 = w1 - value.chars().count();
        let _ = writeln!(
            text,
            "{bar}{}  {}{value}  {verdict}",
            " ".repeat(pad0),
            " ".repeat(pad1)
        );
        let _ = writeln!(md, "| {bar} | {value} | {verdict} |");
    }
    (text, md)
}

/// One CSV field: quoted (with inner quotes doubled) when it holds a comma or quote.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Header of [`csv_table`].
pub const CSV_HEAD: &str =
    "key,label,kind,iters,size_bytes,median_ns,p99_or_slowest_ns,msg_per_s,gb_per_s,vs,ratio,notes";

/// The CSV fields of one row (see [`CSV_HEAD`]); a skipped row has empty figures
/// and its reason in `notes`.
pub fn csv_fields(row: &Row, rows: &[Row]) -> Vec<String> {
    let ratio = row
        .vs
        .as_ref()
        .and_then(|k| rows.iter().find(|r| &r.key == k))
        .and_then(|b| ratio(row, b))
        .map_or(String::new(), |x| format!("{x:.4}"));
    let notes = row
        .extras
        .iter()
        .map(|(n, v)| format!("{n}={v:.4}"))
        .collect::<Vec<_>>()
        .join("; ");
    let (kind, size, median, worst, rate, gbs, notes) = match &row.metric {
        Err(why) => ("skipped", 0, 0.0, 0.0, 0.0, 0.0, why.clone()),
        Ok(Metric::Latency { median, p99 }) => {
            ("latency", 0, *median as f64, *p99 as f64, 0.0, 0.0, notes)
        }
        Ok(Metric::Rate {
            size,
            median,
            worst,
        }) => {
            let per_s = 1e9 / median;
            let gbs = per_s * *size as f64 / 1e9;
            ("rate", *size, *median, *worst, per_s, gbs, notes)
        }
    };
    let num = |x: f64| {
        if kind == "skipped" {
            String::new()
        } else {
            format!("{x:.1}")
        }
    };
    vec![
        row.key.clone(),
        row.label.clone(),
        kind.into(),
        row.iters.to_string(),
        size.to_string(),
        num(median),
        num(worst),
        num(rate),
        if kind == "rate" {
            format!("{gbs:.4}")
        } else {
            String::new()
        },
        row.vs.clone().unwrap_or_default(),
        ratio,
        notes,
    ]
}

/// The results as CSV (header first), one line per row, for charts
/// (`scripts/plot-compare`).
pub fn csv_table(rows: &[Row]) -> String {
    let mut out = format!("{CSV_HEAD}\n");
    for r in rows {
        let line: Vec<String> = csv_fields(r, rows).iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}
