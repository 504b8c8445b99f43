//! Printing the results: a table for people, one JSON line for scripts (and `charts.rs`).

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::run::{Mode, Outcome, Plan};
use crate::server::{HttpServer, StoreKind};

/// What the table and the JSON line are about, besides the runs themselves.
pub(crate) struct Context<'a> {
    pub(crate) plan: &'a Plan,
    pub(crate) pinned: bool,
    pub(crate) cpus: usize,
    pub(crate) loadavg: Option<String>,
}

/// What each mode compares with the baseline: fan-out, delivered messages/s (higher is
/// better); echo, the median round trip; idle, memory per session (lower is better for both).
fn compared(mode: Mode, outcome: &Outcome) -> Option<f64> {
    match mode {
        Mode::Fanout => Some(outcome.delivered_per_sec()),
        Mode::Echo => Some(outcome.latency.value_at_quantile(0.5) as f64),
        Mode::Idle => outcome.rss_per_session_kib(),
    }
}

fn ratio_label(mode: Mode) -> &'static str {
    match mode {
        Mode::Fanout => "delivered msgs/s",
        Mode::Echo => "median round trip",
        Mode::Idle => "RSS per session",
    }
}

/// Each Tidings run's measure (see [`compared`]) relative to the baseline's.
pub(crate) fn ratios(mode: Mode, outcomes: &[Outcome]) -> Vec<(&'static str, f64)> {
    let Some(base) = outcomes
        .iter()
        .find(|o| o.target == "baseline")
        .and_then(|o| compared(mode, o))
        .filter(|b| *b > 0.0)
    else {
        return Vec::new();
    };
    outcomes
        .iter()
        .filter(|o| o.target != "baseline")
        .filter_map(|o| Some((o.target, compared(mode, o)? / base)))
        .collect()
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn opt(value: Option<f64>, digits: usize, unit: &str) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.digits$}{unit}"))
}

fn closed(outcome: &Outcome) -> String {
    if outcome.closed.is_empty() {
        return "0".into();
    }
    let parts: Vec<String> = outcome
        .closed
        .iter()
        .map(|(code, n)| format!("{n}×{code}"))
        .collect();
    parts.join(",")
}

/// The human-readable report.
pub(crate) fn table(
    context: &Context<'_>,
    outcomes: &[Outcome],
    failures: &[(&str, String)],
) -> String {
    let plan = context.plan;
    let mut out = String::new();
    let what = match plan.mode {
        Mode::Fanout => {
            let rate = if plan.rate == 0 {
                "as fast as possible".to_owned()
            } else {
                format!("{} msg/s", plan.rate)
            };
            format!(
                "{} messages of {} bytes at {rate}",
                plan.messages, plan.size
            )
        }
        Mode::Echo => format!("{} echoed messages of {} bytes", plan.messages, plan.size),
        Mode::Idle => format!("held idle for {} s", plan.hold.as_secs()),
    };
    let heartbeat = plan.server.heartbeat.map_or_else(
        || "default".to_owned(),
        |h| format!("{:.1} s", h.as_secs_f64()),
    );
    let _ = writeln!(
        out,
        "load {}: {} sessions, {what}, heartbeat {heartbeat}, {} store, {}{}, timeout {} s; {}",
        plan.mode.name(),
        plan.subscribers,
        match plan.server.store {
            StoreKind::Memory => "memory",
            StoreKind::Redis => "Redis",
        },
        http_name(plan.server.http),
        if plan.nodes > 1 {
            format!(
                ", {} Tidings nodes (memory and CPU summed over them)",
                plan.nodes
            )
        } else {
            String::new()
        },
        plan.timeout.as_secs(),
        if context.pinned {
            "server on CPU 0, load on CPU 1"
        } else {
            "not pinned"
        },
    );
    if let Some(loadavg) = &context.loadavg {
        let _ = writeln!(
            out,
            "load average before the runs: {loadavg} ({} CPUs)",
            context.cpus
        );
    }
    match plan.mode {
        Mode::Fanout | Mode::Echo => {
            let _ = writeln!(
                out,
                "{:<14} {:>12} {:>11} {:>10} {:>10} {:>10} {:>6} {:>4} {:>4} {:>9} {:>9} {:>8} {:>11} {:>8}",
                "target",
                "delivered/s",
                "sent/s",
                if plan.mode == Mode::Echo {
                    "rtt p50"
                } else {
                    "p50"
                },
                "p99",
                "max",
                "lost",
                "dup",
                "ooo",
                "closed",
                "RSS/sess",
                "srv CPU",
                "srv µs/msg",
                "load CPU"
            );
            for o in outcomes {
                let _ = writeln!(
                    out,
                    "{:<14} {:>12.0} {:>11.0} {:>10} {:>10} {:>10} {:>6} {:>4} {:>4} {:>9} {:>9} {:>8} {:>11} {:>8}{}",
                    o.target,
                    o.delivered_per_sec(),
                    o.published_per_sec(),
                    ms(o.latency.value_at_quantile(0.5)),
                    ms(o.latency.value_at_quantile(0.99)),
                    ms(o.latency.max()),
                    o.lost,
                    o.duplicated,
                    o.out_of_order,
                    closed(o),
                    opt(o.rss_per_session_kib(), 1, " KiB"),
                    opt(o.cpu_percent(o.server_cpu), 0, "%"),
                    opt(o.server_us_per_delivery(), 2, ""),
                    opt(o.cpu_percent(o.load_cpu), 0, "%"),
                    if o.timed_out { "  (timed out)" } else { "" },
                );
            }
        }
        Mode::Idle => {
            let _ = writeln!(
                out,
                "{:<14} {:>9} {:>9} {:>9} {:>8} {:>10} {:>11} {:>9} {:>8} {:>8} {:>10}",
                "target",
                "sessions",
                "alive",
                "closed",
                "hb min",
                "hb total",
                "RSS/sess",
                "(opened)",
                "srv CPU",
                "load CPU",
                "open took"
            );
            for o in outcomes {
                let opened = o
                    .rss_connected_kib
                    .zip(o.rss_before_kib)
                    .map(|(a, b)| a.saturating_sub(b) as f64 / o.subscribers.max(1) as f64);
                let _ = writeln!(
                    out,
                    "{:<14} {:>9} {:>9} {:>9} {:>8} {:>10} {:>11} {:>9} {:>8} {:>8} {:>8.1} s{}",
                    o.target,
                    o.subscribers,
                    o.alive_at_end
                        .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                    closed(o),
                    o.heartbeats_min,
                    o.heartbeats,
                    opt(o.rss_per_session_kib(), 2, " KiB"),
                    opt(opened, 2, " KiB"),
                    opt(o.cpu_percent(o.server_cpu), 1, "%"),
                    opt(o.cpu_percent(o.load_cpu), 1, "%"),
                    o.connect_elapsed.as_secs_f64(),
                    if o.timed_out {
                        "  (final probe timed out)"
                    } else {
                        ""
                    },
                );
            }
        }
    }
    for (target, error) in failures {
        let _ = writeln!(out, "{target:<14} failed: {error}");
    }
    for (target, ratio) in ratios(plan.mode, outcomes) {
        let _ = writeln!(
            out,
            "{target}/baseline {}: {ratio:.2}",
            ratio_label(plan.mode)
        );
    }
    out
}

/// One line of JSON with everything in the table, unrounded.
pub(crate) fn json_line(
    context: &Context<'_>,
    outcomes: &[Outcome],
    failures: &[(&str, String)],
) -> String {
    let plan = context.plan;
    let runs: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            json!({
                "target": o.target,
                "published": o.published,
                "delivered": o.delivered,
                "elapsed_s": o.elapsed.as_secs_f64(),
                "delivered_per_s": o.delivered_per_sec(),
                "published_per_s": o.published_per_sec(),
                "latency_us": {
                    "p50": o.latency.value_at_quantile(0.5),
                    "p90": o.latency.value_at_quantile(0.9),
                    "p99": o.latency.value_at_quantile(0.99),
                    "p999": o.latency.value_at_quantile(0.999),
                    "max": o.latency.max(),
                    "mean": o.latency.mean(),
                },
                "lost": o.lost,
                "duplicated": o.duplicated,
                "out_of_order": o.out_of_order,
                "closed": o.closed.iter().map(|(code, n)| (code.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
                "timed_out": o.timed_out,
                "heartbeats_min": o.heartbeats_min,
                "heartbeats": o.heartbeats,
                "alive_at_end": o.alive_at_end,
                "connect_s": o.connect_elapsed.as_secs_f64(),
                "rss_before_kib": o.rss_before_kib,
                "rss_connected_kib": o.rss_connected_kib,
                "rss_end_kib": o.rss_end_kib,
                "rss_per_session_kib": o.rss_per_session_kib(),
                "cpu_wall_s": o.cpu_wall.as_secs_f64(),
                "server_cpu_s": o.server_cpu.map(|d| d.as_secs_f64()),
                "server_cpu_percent": o.cpu_percent(o.server_cpu),
                "server_us_per_delivery": o.server_us_per_delivery(),
                "load_cpu_s": o.load_cpu.map(|d| d.as_secs_f64()),
                "load_cpu_percent": o.cpu_percent(o.load_cpu),
            })
        })
        .collect();
    let ratios: serde_json::Map<String, Value> = ratios(plan.mode, outcomes)
        .into_iter()
        .map(|(target, ratio)| (target.to_owned(), json!(ratio)))
        .collect();
    let failures: serde_json::Map<String, Value> = failures
        .iter()
        .map(|(target, error)| ((*target).to_owned(), json!(error)))
        .collect();
    json!({
        "mode": plan.mode.name(),
        "subscribers": plan.subscribers,
        "messages": plan.messages,
        "rate": plan.rate,
        "size": plan.size,
        "hold_s": plan.hold.as_secs(),
        "heartbeat_s": plan.server.heartbeat.map(|h| h.as_secs_f64()),
        "store": match plan.server.store { StoreKind::Memory => "memory", StoreKind::Redis => "redis" },
        "http": http_name(plan.server.http),
        "nodes": plan.nodes,
        "retention": plan.server.retention,
        "timeout_s": plan.timeout.as_secs(),
        "pinned": context.pinned,
        "cpus": context.cpus,
        "loadavg": context.loadavg,
        "runs": runs,
        "ratio_to_baseline": ratios,
        "failures": failures,
    })
    .to_string()
}

/// How the report names the Tidings server's HTTP loop.
fn http_name(http: HttpServer) -> &'static str {
    match http {
        HttpServer::Tidings => "tidings::serve",
        HttpServer::Axum => "axum::serve",
    }
}
