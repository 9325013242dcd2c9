//! Server resource sampling from `/proc/<pid>` (`--server-pid`): RSS and CPU time, so a soak
//! can report memory drift and a storm the CPU it cost, without any agent on the server.

use serde::Serialize;
use std::time::{Duration, Instant};

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since sampling started.
    pub t_s: f64,
    /// Resident set size in KiB.
    pub rss_kib: u64,
    /// User + system CPU seconds consumed so far.
    pub cpu_s: f64,
}

/// Reads `/proc/<pid>`; `None` once the process is gone.
pub fn read(pid: u32) -> Option<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some((
        parse_rss_kib(&status)?,
        parse_cpu_s(&stat, ticks_per_second())?,
    ))
}

/// `VmRSS` in KiB from the text of `/proc/<pid>/status`.
pub fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// utime + stime in seconds from the text of `/proc/<pid>/stat`.
pub fn parse_cpu_s(stat: &str, ticks: f64) -> Option<f64> {
    // The command name may contain spaces; fields restart after its closing ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': state(0) ppid(1) ... utime(11) stime(12).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Periodic samples of one process over a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Series {
    /// The readings, in time order.
    pub samples: Vec<Sample>,
}

impl Series {
    /// Figures for the report: RSS start/end/peak, drift, CPU seconds and average percent.
    pub fn summary(&self) -> Option<serde_json::Value> {
        let first = self.samples.first()?;
        let last = self.samples.last()?;
        let peak = self.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let cpu = (last.cpu_s - first.cpu_s).max(0.0);
        let span = (last.t_s - first.t_s).max(1e-9);
        let drift = last.rss_kib as i64 - first.rss_kib as i64;
        let drift_pct = if first.rss_kib > 0 {
            100.0 * drift as f64 / first.rss_kib as f64
        } else {
            0.0
        };
        Some(serde_json::json!({
            "rss_start_kib": first.rss_kib,
            "rss_end_kib": last.rss_kib,
            "rss_peak_kib": peak,
            "rss_drift_kib": drift,
            "rss_drift_pct": crate::latency::round3(drift_pct),
            "cpu_s": crate::latency::round3(cpu),
            "cpu_avg_pct": crate::latency::round3(100.0 * cpu / span),
            "samples": self.samples.len(),
        }))
    }

    /// At most `max` evenly spaced samples, for the JSON report.
    pub fn thinned(&self, max: usize) -> Vec<Sample> {
        if self.samples.len() <= max || max < 2 {
            return self.samples.clone();
        }
        let step = (self.samples.len() - 1) as f64 / (max - 1) as f64;
        (0..max)
            .map(|i| self.samples[((i as f64) * step).round() as usize])
            .collect()
    }
}

/// Background sampler of a process until stopped.
pub struct Sampler {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Series>,
}

impl Sampler {
    /// Starts sampling `pid` every `every` (first reading immediately).
    pub fn start(pid: u32, every: Duration) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let origin = Instant::now();
            let mut series = Series::default();
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => {}
                }
                if let Some((rss_kib, cpu_s)) = read(pid) {
                    series.samples.push(Sample {
                        t_s: crate::latency::round3(origin.elapsed().as_secs_f64()),
                        rss_kib,
                        cpu_s,
                    });
                }
                if *stopped.borrow() {
                    return series;
                }
            }
        });
        Self { stop, task }
    }

    /// Takes a last reading and returns the series.
    pub async fn finish(self) -> Series {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_text() {
        let status = "Name:\tliveshop\nVmPeak:\t  9999 kB\nVmRSS:\t   12345 kB\n";
        assert_eq!(parse_rss_kib(status), Some(12345));
        let stat = "42 (live shop) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0";
        assert_eq!(parse_cpu_s(stat, 100.0), Some(3.0));
        assert_eq!(parse_cpu_s("garbage", 100.0), None);
    }

    #[test]
    fn reads_own_process() {
        let (rss, cpu) = read(std::process::id()).unwrap();
        assert!(rss > 0);
        assert!(cpu >= 0.0);
    }

    #[test]
    fn summary_and_thinning() {
        let series = Series {
            samples: (0..10)
                .map(|i| Sample {
                    t_s: i as f64,
                    rss_kib: 1000 + i * 10,
                    cpu_s: i as f64 * 0.5,
                })
                .collect(),
        };
        let s = series.summary().unwrap();
        assert_eq!(s["rss_start_kib"], 1000);
        assert_eq!(s["rss_end_kib"], 1090);
        assert_eq!(s["rss_drift_kib"], 90);
        assert_eq!(s["cpu_s"], 4.5);
        assert_eq!(s["cpu_avg_pct"], 50.0);
        let thin = series.thinned(4);
        assert_eq!(thin.len(), 4);
        assert_eq!(thin[0].t_s, 0.0);
        assert_eq!(thin[3].t_s, 9.0);
    }
}
