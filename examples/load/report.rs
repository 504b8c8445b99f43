//! Printing the results: a table for people, one JSON line for scripts.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::run::{Outcome, Plan};

/// What the table and the JSON line are about, besides the runs themselves.
pub(crate) struct Context<'a> {
    pub(crate) plan: &'a Plan,
    pub(crate) pinned: bool,
    pub(crate) cpus: usize,
    pub(crate) loadavg: Option<String>,
}

/// Delivered messages/s of each Tidings run relative to the baseline's.
pub(crate) fn ratios(outcomes: &[Outcome]) -> Vec<(&'static str, f64)> {
    let Some(baseline) = outcomes.iter().find(|o| o.target == "baseline") else {
        return Vec::new();
    };
    let base = baseline.delivered_per_sec();
    outcomes
        .iter()
        .filter(|o| o.target != "baseline" && base > 0.0)
        .map(|o| (o.target, o.delivered_per_sec() / base))
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
    let rate = if plan.rate == 0 {
        "as fast as possible".to_owned()
    } else {
        format!("{} msg/s", plan.rate)
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "load: {} subscribers, {} messages of {} bytes at {rate}, timeout {} s; {}",
        plan.subscribers,
        plan.messages,
        plan.size,
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
    let _ = writeln!(
        out,
        "{:<15} {:>12} {:>11} {:>10} {:>10} {:>10} {:>6} {:>4} {:>4} {:>9} {:>9} {:>8} {:>11} {:>8}",
        "target",
        "delivered/s",
        "published/s",
        "p50",
        "p99",
        "max",
        "lost",
        "dup",
        "ooo",
        "closed",
        "RSS/conn",
        "srv CPU",
        "srv µs/msg",
        "load CPU"
    );
    for o in outcomes {
        let _ = writeln!(
            out,
            "{:<15} {:>12.0} {:>11.0} {:>10} {:>10} {:>10} {:>6} {:>4} {:>4} {:>9} {:>9} {:>8} {:>11} {:>8}{}",
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
            opt(o.rss_per_connection_kib(), 1, " KiB"),
            opt(o.cpu_percent(o.server_cpu), 0, "%"),
            opt(o.server_us_per_delivery(), 2, ""),
            opt(o.cpu_percent(o.load_cpu), 0, "%"),
            if o.timed_out { "  (timed out)" } else { "" },
        );
    }
    for (target, error) in failures {
        let _ = writeln!(out, "{target:<15} failed: {error}");
    }
    for (target, ratio) in ratios(outcomes) {
        let _ = writeln!(out, "{target}/baseline delivered msgs/s: {ratio:.2}");
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
                "rss_before_kib": o.rss_before_kib,
                "rss_after_kib": o.rss_after_kib,
                "rss_per_connection_kib": o.rss_per_connection_kib(),
                "server_cpu_s": o.server_cpu.map(|d| d.as_secs_f64()),
                "server_cpu_percent": o.cpu_percent(o.server_cpu),
                "server_us_per_delivery": o.server_us_per_delivery(),
                "load_cpu_s": o.load_cpu.map(|d| d.as_secs_f64()),
                "load_cpu_percent": o.cpu_percent(o.load_cpu),
            })
        })
        .collect();
    let ratios: serde_json::Map<String, Value> = ratios(outcomes)
        .into_iter()
        .map(|(target, ratio)| (target.to_owned(), json!(ratio)))
        .collect();
    let failures: serde_json::Map<String, Value> = failures
        .iter()
        .map(|(target, error)| ((*target).to_owned(), json!(error)))
        .collect();
    json!({
        "subscribers": plan.subscribers,
        "messages": plan.messages,
        "rate": plan.rate,
        "size": plan.size,
        "retention": plan.retention,
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
