//! Draws the charts of `docs/benchmarks.md` from the load program's JSON lines.
//!
//! ```text
//! cargo run --example load-charts -- docs/benchmarks/results.jsonl docs/benchmarks
//! ```
//!
//! Reads every line `load --json` printed (one per invocation) and writes one SVG per chart
//! into the output folder. Where several invocations measured the same configuration, each
//! bar is the median of their runs of that target; runs that hit their time bound are left
//! out. Charts whose configuration has no run are skipped and said so.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use plotters::coord::ranged1d::{SegmentValue, SegmentedCoord};
use plotters::coord::types::RangedCoordusize;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

/// The order bars appear in, top to bottom.
const TARGETS: [&str; 11] = [
    "sockjs-ws",
    "raw-ws",
    "xhr-streaming",
    "eventsource",
    "xhr-polling",
    "native-ws",
    "native-sse",
    "native-stream",
    "native-poll",
    "stomp-ws",
    "baseline",
];

/// Which runs a chart is drawn from.
struct Config {
    mode: &'static str,
    subscribers: u64,
    /// Fan-out only: the publish rate (0: as fast as possible).
    rate: Option<u64>,
}

/// One bar: a target's value, and a tick further along for a tail (p99).
struct Row {
    label: String,
    value: f64,
    tick: Option<f64>,
    color: RGBColor,
}

/// What a chart shows.
struct Chart {
    file: &'static str,
    title: String,
    axis: &'static str,
    rows: Vec<Row>,
    /// Vertical reference lines: the targets the numbers are held to.
    references: Vec<(String, f64)>,
    log: bool,
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let input = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "docs/benchmarks/results.jsonl".into()),
    );
    let output = PathBuf::from(args.next().unwrap_or_else(|| "docs/benchmarks".into()));
    match run(&input, &output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("load-charts: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(input: &Path, output: &Path) -> Result<(), Box<dyn Error>> {
    let text = std::fs::read_to_string(input)
        .map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    std::fs::create_dir_all(output)?;
    let mut charts = Vec::new();
    for subscribers in [1000, 10_000] {
        let fanout = Config {
            mode: "fanout",
            subscribers,
            rate: Some(0),
        };
        charts.push(fanout_chart(&lines, &fanout, Fanout::Throughput));
        charts.push(fanout_chart(&lines, &fanout, Fanout::Cost));
        let idle = Config {
            mode: "idle",
            subscribers,
            rate: None,
        };
        charts.push(idle_chart(&lines, &idle));
        let echo = Config {
            mode: "echo",
            subscribers,
            rate: None,
        };
        charts.push(latency_chart(
            &lines,
            &echo,
            "echo",
            format!("Echo round trip, {subscribers} sessions: median (bar) and p99 (tick)"),
        ));
    }
    let paced = Config {
        mode: "fanout",
        subscribers: 1000,
        rate: Some(1000),
    };
    charts.push(latency_chart(
        &lines,
        &paced,
        "latency",
        "Delivery latency, 1000 subscribers × 1000 msg/s: median (bar) and p99 (tick)".into(),
    ));
    for chart in charts {
        let path = output.join(chart.file);
        if chart.rows.is_empty() {
            eprintln!("load-charts: no runs for {}; skipped", chart.file);
            continue;
        }
        draw(&path, &chart)?;
        eprintln!("load-charts: wrote {}", path.display());
    }
    Ok(())
}

/// The runs of `config`, by target, over every invocation that matches it.
fn runs<'a>(lines: &'a [Value], config: &Config) -> BTreeMap<&'a str, Vec<&'a Value>> {
    let mut by_target: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    let matching = lines.iter().filter(|line| {
        line["mode"].as_str() == Some(config.mode)
            && line["subscribers"].as_u64() == Some(config.subscribers)
            && config
                .rate
                .is_none_or(|rate| line["rate"].as_u64() == Some(rate))
            && line["store"].as_str().unwrap_or("memory") == "memory"
    });
    for line in matching {
        // A run cut short by its time bound measured something else; leave it out.
        let complete = |run: &&Value| !run["timed_out"].as_bool().unwrap_or(false);
        for run in line["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(complete)
        {
            if let Some(target) = run["target"].as_str() {
                by_target.entry(target).or_default().push(run);
            }
        }
    }
    by_target
}

/// The median of `field` (a JSON pointer) over `runs`, if any has it.
fn median(runs: &[&Value], field: &str) -> Option<f64> {
    let mut values: Vec<f64> = runs
        .iter()
        .filter_map(|run| run.pointer(field)?.as_f64())
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Grey for the baseline, one colour per protocol family.
fn color(target: &str) -> RGBColor {
    match target {
        "baseline" => RGBColor(130, 130, 130),
        t if t.starts_with("native") => RGBColor(230, 120, 30),
        _ => RGBColor(40, 110, 190),
    }
}

/// One row per target that has runs, in [`TARGETS`] order, from `value` and `tick`.
fn rows(
    by_target: &BTreeMap<&str, Vec<&Value>>,
    value: impl Fn(&[&Value]) -> Option<f64>,
    tick: impl Fn(&[&Value]) -> Option<f64>,
) -> Vec<Row> {
    TARGETS
        .iter()
        .filter_map(|target| {
            let runs = by_target.get(target)?;
            Some(Row {
                label: (*target).to_owned(),
                value: value(runs)?,
                tick: tick(runs),
                color: color(target),
            })
        })
        .collect()
}

/// What a fan-out chart shows of each target.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fanout {
    /// Delivered messages/s.
    Throughput,
    /// Server CPU per delivery: what a delivery costs the server, however much of its core it
    /// got (on a shared machine, delivered messages/s also measures the neighbours).
    Cost,
}

fn fanout_chart(lines: &[Value], config: &Config, what: Fanout) -> Chart {
    let by_target = runs(lines, config);
    let (field, scale) = match what {
        Fanout::Throughput => ("/delivered_per_s", 1e-6),
        Fanout::Cost => ("/server_us_per_delivery", 1.0),
    };
    let value = |runs: &[&Value]| median(runs, field).map(|v| v * scale);
    let rows = rows(&by_target, value, |_| None);
    let references = by_target
        .get("baseline")
        .and_then(|runs| value(runs))
        .map(|base| {
            [0.5, 0.8]
                .map(|share| match what {
                    Fanout::Throughput => (format!("{share}× baseline"), base * share),
                    // At 0.8× the baseline's throughput, a delivery may cost 1/0.8 of its cost.
                    Fanout::Cost => (format!("cost at {share}× baseline"), base / share),
                })
                .to_vec()
        })
        .unwrap_or_default();
    let n = config.subscribers;
    let (file, title, axis) = match (what, n) {
        (Fanout::Throughput, 1000) => ("fanout-1000.svg", "delivered messages/s", THROUGHPUT),
        (Fanout::Throughput, _) => ("fanout-10000.svg", "delivered messages/s", THROUGHPUT),
        (Fanout::Cost, 1000) => ("fanout-cost-1000.svg", "server CPU per delivery", COST),
        (Fanout::Cost, _) => ("fanout-cost-10000.svg", "server CPU per delivery", COST),
    };
    Chart {
        file,
        title: format!("Fan-out as fast as possible, {n} subscribers: {title}"),
        axis,
        rows,
        references,
        log: what == Fanout::Cost,
    }
}

const THROUGHPUT: &str = "million delivered messages per second (median of runs)";
const COST: &str = "server CPU microseconds per delivered message (median of runs; log scale)";

fn idle_chart(lines: &[Value], config: &Config) -> Chart {
    let by_target = runs(lines, config);
    let rows = rows(
        &by_target,
        |runs| median(runs, "/rss_per_session_kib"),
        |_| None,
    );
    Chart {
        file: if config.subscribers == 1000 {
            "idle-1000.svg"
        } else {
            "idle-10000.svg"
        },
        title: format!(
            "Idle sessions, {}: server memory per session",
            config.subscribers
        ),
        axis: "KiB of server RSS per session (log scale)",
        rows,
        references: vec![
            ("8 KiB (WebSocket goal)".to_owned(), 8.0),
            ("12 KiB (HTTP goal)".to_owned(), 12.0),
        ],
        log: true,
    }
}

fn latency_chart(lines: &[Value], config: &Config, name: &'static str, title: String) -> Chart {
    let by_target = runs(lines, config);
    let rows = rows(
        &by_target,
        |runs| median(runs, "/latency_us/p50").map(|us| us / 1000.0),
        |runs| median(runs, "/latency_us/p99").map(|us| us / 1000.0),
    );
    let file = match (name, config.subscribers) {
        ("echo", 1000) => "echo-1000.svg",
        ("echo", _) => "echo-10000.svg",
        _ => "latency-1000.svg",
    };
    Chart {
        file,
        title,
        axis: "milliseconds (log scale)",
        rows,
        references: Vec::new(),
        log: true,
    }
}

/// A horizontal bar chart: one row per target, value along x.
fn draw(path: &Path, chart: &Chart) -> Result<(), Box<dyn Error>> {
    let n = chart.rows.len();
    let height = 110 + 34 * n as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let largest = chart
        .rows
        .iter()
        .flat_map(|r| [Some(r.value), r.tick])
        .flatten()
        .chain(chart.references.iter().map(|(_, v)| *v))
        .fold(0.0f64, f64::max);
    // Row 0 is drawn at the top, so segment `y` shows row `n - 1 - y`.
    let labels: Vec<&str> = chart.rows.iter().rev().map(|r| r.label.as_str()).collect();
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(y) => labels.get(*y).map_or(String::new(), |l| (*l).to_owned()),
        _ => String::new(),
    };
    // A discrete range includes its end: `0..last` is `n` segments.
    let last = n.saturating_sub(1);
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(&chart.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(120);
    if chart.log {
        let smallest = chart
            .rows
            .iter()
            .map(|r| r.value)
            .chain(chart.references.iter().map(|(_, v)| *v))
            .fold(f64::MAX, f64::min);
        let low = 10f64.powf((smallest.max(1e-3) / 2.0).log10().floor());
        let high = 10f64.powf((largest * 1.5).log10().ceil());
        let mut plot =
            builder.build_cartesian_2d((low..high).log_scale(), (0..last).into_segmented())?;
        plot.configure_mesh()
            .disable_y_mesh()
            .y_label_formatter(&label)
            .x_desc(chart.axis)
            .draw()?;
        bars(&mut plot, chart, low)?;
    } else {
        let mut plot =
            builder.build_cartesian_2d(0f64..largest * 1.15, (0..last).into_segmented())?;
        plot.configure_mesh()
            .disable_y_mesh()
            .y_label_formatter(&label)
            .x_desc(chart.axis)
            .draw()?;
        bars(&mut plot, chart, 0.0)?;
    }
    root.present()?;
    Ok(())
}

/// The bars, ticks, value labels and reference lines, on a chart whose x axis starts at `zero`.
fn bars<'a, X>(
    plot: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, SegmentedCoord<RangedCoordusize>>>,
    chart: &Chart,
    zero: f64,
) -> Result<(), Box<dyn Error>>
where
    X: Ranged<ValueType = f64>,
{
    let n = chart.rows.len();
    // Segment 0 is at the bottom; the first row goes at the top.
    let at = |i: usize| n - 1 - i;
    plot.draw_series(chart.rows.iter().enumerate().map(|(i, row)| {
        let y = at(i);
        let mut bar = Rectangle::new(
            [
                (zero, SegmentValue::Exact(y)),
                (row.value, SegmentValue::Exact(y + 1)),
            ],
            row.color.filled(),
        );
        bar.set_margin(5, 5, 0, 0);
        bar
    }))?;
    plot.draw_series(chart.rows.iter().enumerate().filter_map(|(i, row)| {
        let tick = row.tick?;
        let y = at(i);
        Some(PathElement::new(
            [
                (tick, SegmentValue::Exact(y)),
                (tick, SegmentValue::Exact(y + 1)),
            ],
            BLACK.stroke_width(2),
        ))
    }))?;
    let style = ("sans-serif", 12)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    plot.draw_series(chart.rows.iter().enumerate().map(|(i, row)| {
        let far = row.tick.unwrap_or(row.value).max(row.value);
        let text = match row.tick {
            Some(tick) => format!("{} / {}", number(row.value), number(tick)),
            None => number(row.value),
        };
        EmptyElement::at((far, SegmentValue::CenterOf(at(i))))
            + Text::new(text, (6, 0), style.clone())
    }))?;
    for (name, value) in &chart.references {
        let line = RGBColor(200, 30, 30);
        plot.draw_series(std::iter::once(PathElement::new(
            [
                (*value, SegmentValue::Exact(0)),
                (*value, SegmentValue::Exact(n)),
            ],
            line.stroke_width(1),
        )))?
        .label(name.as_str())
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], line.stroke_width(1)));
    }
    if !chart.references.is_empty() {
        plot.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}

/// A value as the bars' labels show it: three significant digits.
fn number(value: f64) -> String {
    match value {
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 10.0 => format!("{v:.1}"),
        v => format!("{v:.2}"),
    }
}
