//! Service-level objectives given on the command line (`--slo "p99<50ms,lost=0"`): a run
//! that breaches one exits with code 2, so CI and benchmarks can gate on the tool alone.

use serde::Serialize;

/// Comparison of one objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `=` (or `==`)
    #[serde(rename = "=")]
    Eq,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
    /// `>`
    #[serde(rename = ">")]
    Gt,
}

impl Op {
    /// Whether `actual op threshold` holds.
    pub fn holds(self, actual: f64, threshold: f64) -> bool {
        match self {
            Op::Lt => actual < threshold,
            Op::Le => actual <= threshold,
            Op::Eq => (actual - threshold).abs() < 1e-9,
            Op::Ge => actual >= threshold,
            Op::Gt => actual > threshold,
        }
    }
}

/// One objective, e.g. `p99<50ms`: latency thresholds are kept in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Objective {
    /// Metric name as written (`p99`, `lost`, `errors`, or any numeric report field).
    pub metric: String,
    /// Comparison.
    pub op: Op,
    /// Threshold, in milliseconds for latency metrics.
    pub threshold: f64,
}

/// Latency metrics, read from the report's `latency_ms` object.
pub const LATENCY_METRICS: [&str; 6] = ["p50", "p90", "p99", "p999", "max", "mean"];

/// Whether `metric` is a latency percentile (its threshold takes a time unit).
pub fn is_latency(metric: &str) -> bool {
    LATENCY_METRICS.contains(&metric)
}

/// Parses a comma-separated list of objectives.
pub fn parse(spec: &str) -> Result<Vec<Objective>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        out.push(parse_one(part)?);
    }
    if out.is_empty() {
        return Err("empty --slo".into());
    }
    Ok(out)
}

fn parse_one(part: &str) -> Result<Objective, String> {
    const OPS: [(&str, Op); 6] = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
        ("=", Op::Eq),
    ];
    let (at, token, op) = OPS
        .iter()
        .filter_map(|(token, op)| part.find(token).map(|at| (at, *token, *op)))
        .min_by_key(|(at, token, _)| (*at, std::cmp::Reverse(token.len())))
        .ok_or_else(|| format!("SLO {part:?} has no comparison (<, <=, =, >=, >)"))?;
    let metric = part[..at].trim().to_string();
    let value = part[at + token.len()..].trim();
    if metric.is_empty()
        || !metric
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        return Err(format!("SLO {part:?} has an invalid metric name"));
    }
    let threshold = parse_threshold(&metric, value).map_err(|e| format!("SLO {part:?}: {e}"))?;
    Ok(Objective {
        metric,
        op,
        threshold,
    })
}

fn parse_threshold(metric: &str, value: &str) -> Result<f64, String> {
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("invalid number {number:?}"))?;
    let unit = unit.trim();
    if is_latency(metric) {
        let scale = match unit {
            "" | "ms" => 1.0,
            "s" => 1000.0,
            "us" | "µs" => 0.001,
            other => return Err(format!("unknown time unit {other:?} (use ms, s or us)")),
        };
        Ok(number * scale)
    } else if unit.is_empty() {
        Ok(number)
    } else {
        Err(format!("{metric} takes a plain number, not {unit:?}"))
    }
}

/// Outcome of one objective against a report.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The objective checked.
    #[serde(flatten)]
    pub objective: Objective,
    /// The measured value (`None` when the report has no such metric, which fails).
    pub actual: Option<f64>,
    /// Whether it held.
    pub passed: bool,
}

/// Checks every objective with `lookup` giving the measured value of a metric.
pub fn evaluate(objectives: &[Objective], lookup: impl Fn(&str) -> Option<f64>) -> Vec<Verdict> {
    objectives
        .iter()
        .map(|objective| {
            let actual = lookup(&objective.metric);
            let passed = actual.is_some_and(|a| objective.op.holds(a, objective.threshold));
            Verdict {
                objective: objective.clone(),
                actual,
                passed,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let slo = parse("p99<50ms, lost=0,errors<=3,p50<=0.2s,max<900us,p90<7").unwrap();
        let expected = [
            ("p99", Op::Lt, 50.0),
            ("lost", Op::Eq, 0.0),
            ("errors", Op::Le, 3.0),
            ("p50", Op::Le, 200.0),
            ("max", Op::Lt, 0.9),
            ("p90", Op::Lt, 7.0),
        ];
        assert_eq!(slo.len(), expected.len());
        for (o, (m, op, t)) in slo.iter().zip(expected) {
            assert_eq!(o.metric, m);
            assert_eq!(o.op, op);
            assert!((o.threshold - t).abs() < 1e-9, "{o:?}");
        }
        assert_eq!(parse("resyncs>=1").unwrap()[0].op, Op::Ge);
        assert_eq!(parse("lost==0").unwrap()[0].op, Op::Eq);
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in [
            "", "p99", "p99<", "p99<fast", "p99<5min", "lost=0ms", "<5", "p 9<1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn evaluates_against_values() {
        let slo = parse("p99<50ms,lost=0,errors<=2").unwrap();
        let good = evaluate(&slo, |m| match m {
            "p99" => Some(12.5),
            "lost" => Some(0.0),
            "errors" => Some(2.0),
            _ => None,
        });
        assert!(good.iter().all(|v| v.passed));
        let bad = evaluate(&slo, |m| match m {
            "p99" => Some(50.0),
            "lost" => Some(1.0),
            _ => None,
        });
        assert!(bad.iter().all(|v| !v.passed));
        assert_eq!(bad[2].actual, None);
    }

    #[test]
    fn impossible_objective_fails() {
        let slo = parse("p99<0ms").unwrap();
        assert!(!evaluate(&slo, |_| Some(0.0))[0].passed);
    }
}
