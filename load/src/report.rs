//! The outcome of a run: one shape for every scenario, printed as a human summary on stderr
//! and, with `--json`, as one JSON object on stdout, and the source of `--slo` values.

use crate::latency::Latency;
use crate::slo::{self, Objective, Verdict};
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// A scenario's results.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name (`http`, `fanout`, `soak`, `storm`, `drop`).
    pub scenario: String,
    /// Version of this tool.
    pub tool_version: String,
    /// Base URL of the server under test.
    pub url: String,
    /// Parameters of the run (connections, rates, durations...).
    pub config: Map<String, Value>,
    /// Wall time of the measured phase, in seconds.
    pub duration_s: f64,
    /// The scenario's main latency distribution, in milliseconds.
    pub latency_ms: Latency,
    /// Events or messages that should have arrived and never did.
    pub lost: u64,
    /// Failed operations (HTTP errors, failed connects, error frames...).
    pub errors: u64,
    /// Scenario-specific figures, flattened into the top level of the JSON.
    #[serde(flatten)]
    pub stats: Map<String, Value>,
    /// Objectives checked with `--slo`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slo: Option<SloOutcome>,
    /// Lines shown first in the human summary.
    #[serde(skip)]
    pub headline: Vec<String>,
    /// Broken correctness invariants (oversell, lost reservation...): exit code 3.
    #[serde(skip)]
    pub violations: Vec<String>,
}

/// `--slo` result inside a report.
#[derive(Debug, Clone, Serialize)]
pub struct SloOutcome {
    /// Whether every objective held.
    pub passed: bool,
    /// One verdict per objective.
    pub checks: Vec<Verdict>,
}

impl Report {
    /// An empty report for `scenario` against `url`.
    pub fn new(scenario: &str, url: &str) -> Self {
        Self {
            scenario: scenario.to_string(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            url: url.to_string(),
            config: Map::new(),
            duration_s: 0.0,
            latency_ms: Latency::default(),
            lost: 0,
            errors: 0,
            stats: Map::new(),
            slo: None,
            headline: Vec::new(),
            violations: Vec::new(),
        }
    }

    /// Adds a run parameter.
    pub fn config(&mut self, key: &str, value: impl Serialize) {
        self.config.insert(key.into(), to_value(value));
    }

    /// Adds a scenario-specific figure.
    pub fn stat(&mut self, key: &str, value: impl Serialize) {
        self.stats.insert(key.into(), to_value(value));
    }

    /// Value of a metric for `--slo`: latency percentiles, `lost`, `errors`, `duration_s`,
    /// or any numeric field of the report (nested fields with dots, e.g. `server.rss_drift_kib`).
    pub fn metric(&self, name: &str) -> Option<f64> {
        if slo::is_latency(name) {
            return self.latency_ms.get(name);
        }
        match name {
            "lost" => return Some(self.lost as f64),
            "errors" => return Some(self.errors as f64),
            "duration_s" => return Some(self.duration_s),
            _ => {}
        }
        let mut parts = name.split('.');
        let mut value = self.stats.get(parts.next()?)?;
        for part in parts {
            value = value.get(part)?;
        }
        match value {
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            other => other.as_f64(),
        }
    }

    /// Checks `objectives` and stores the outcome; returns whether all held.
    pub fn apply_slo(&mut self, objectives: &[Objective]) -> bool {
        let checks = slo::evaluate(objectives, |m| self.metric(m));
        let passed = checks.iter().all(|c| c.passed);
        self.slo = Some(SloOutcome { passed, checks });
        passed
    }

    /// Pretty JSON for stdout.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report is plain data")
    }

    /// Multi-line summary for people.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "== liveshop-load {} against {} ({:.1}s)",
            self.scenario, self.url, self.duration_s
        );
        for line in &self.headline {
            let _ = writeln!(out, "  {line}");
        }
        let l = &self.latency_ms;
        if l.count > 0 {
            let _ = writeln!(
                out,
                "  latency ms: p50 {} | p90 {} | p99 {} | p99.9 {} | max {} ({} samples)",
                l.p50, l.p90, l.p99, l.p999, l.max, l.count
            );
        }
        let _ = writeln!(out, "  lost {} | errors {}", self.lost, self.errors);
        for violation in &self.violations {
            let _ = writeln!(out, "  VIOLATION {violation}");
        }
        for (key, value) in &self.stats {
            let _ = writeln!(out, "  {key}: {}", compact(value));
        }
        if let Some(slo) = &self.slo {
            for check in &slo.checks {
                let o = &check.objective;
                let actual = check
                    .actual
                    .map_or_else(|| "missing".to_string(), |a| a.to_string());
                let _ = writeln!(
                    out,
                    "  SLO {} {} {}: actual {} -> {}",
                    o.metric,
                    serde_json::to_value(o.op)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    o.threshold,
                    actual,
                    if check.passed { "ok" } else { "BREACHED" }
                );
            }
        }
        out
    }
}

fn to_value(value: impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn compact(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 200 {
        format!("{}...", &text[..text.floor_char_boundary(200)])
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::Recorder;

    fn sample() -> Report {
        let mut r = Report::new("fanout", "http://127.0.0.1:1");
        r.config("connections", 10);
        r.duration_s = 3.0;
        let rec = Recorder::default();
        for us in [1000, 2000, 3000] {
            rec.record(0, us);
        }
        r.latency_ms = rec.summary();
        r.lost = 2;
        r.errors = 1;
        r.stat("delivered", 30);
        r.stat("server", serde_json::json!({"rss_drift_kib": 12}));
        r.headline.push("hello".into());
        r
    }

    #[test]
    fn json_shape() {
        let mut r = sample();
        r.apply_slo(&slo::parse("p99<1ms,lost=2").unwrap());
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        for key in [
            "scenario",
            "tool_version",
            "url",
            "config",
            "duration_s",
            "latency_ms",
            "lost",
            "errors",
            "delivered",
            "server",
            "slo",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        assert!(v.get("headline").is_none());
        assert_eq!(v["scenario"], "fanout");
        assert_eq!(v["config"]["connections"], 10);
        for key in ["count", "mean", "p50", "p90", "p99", "p999", "max"] {
            assert!(v["latency_ms"][key].is_number(), "latency_ms.{key}");
        }
        assert_eq!(v["latency_ms"]["count"], 3);
        assert_eq!(v["delivered"], 30);
        assert_eq!(v["slo"]["passed"], false);
        assert_eq!(v["slo"]["checks"][0]["metric"], "p99");
        assert_eq!(v["slo"]["checks"][0]["op"], "<");
        assert_eq!(v["slo"]["checks"][0]["passed"], false);
        assert_eq!(v["slo"]["checks"][1]["passed"], true);
    }

    #[test]
    fn metric_lookup() {
        let r = sample();
        assert_eq!(r.metric("lost"), Some(2.0));
        assert_eq!(r.metric("errors"), Some(1.0));
        assert_eq!(r.metric("delivered"), Some(30.0));
        assert_eq!(r.metric("server.rss_drift_kib"), Some(12.0));
        assert!(r.metric("p50").unwrap() > 0.0);
        assert_eq!(r.metric("nope"), None);
    }

    #[test]
    fn human_summary_mentions_key_figures() {
        let text = sample().human();
        assert!(text.contains("fanout"));
        assert!(text.contains("hello"));
        assert!(text.contains("lost 2"));
        assert!(text.contains("delivered: 30"));
    }
}
