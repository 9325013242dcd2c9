//! Latency recording shared by many tasks: a few mutex-guarded HDR histograms (one per
//! shard) instead of one per connection, because a histogram costs ~100 KiB and the tool
//! holds tens of thousands of connections.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::{Arc, Mutex};

const HIGHEST_US: u64 = 3_600_000_000;
const SHARDS: usize = 16;
const LOCAL_BATCH: usize = 64;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("static histogram bounds are valid")
}

/// Thread-safe latency histogram in microseconds.
pub struct Recorder {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
        }
    }
}

impl Recorder {
    /// A new, empty recorder behind an `Arc`.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records several samples into the shard picked by `hint`.
    pub fn record_many(&self, hint: usize, samples: &[u64]) {
        let mut shard = self.shards[hint % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for &us in samples {
            shard.saturating_record(us.clamp(1, HIGHEST_US));
        }
    }

    /// Records one sample.
    pub fn record(&self, hint: usize, us: u64) {
        self.record_many(hint, &[us]);
    }

    /// All shards merged.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            all.add(&*shard).expect("same bounds");
        }
        all
    }

    /// Percentile summary of everything recorded.
    pub fn summary(&self) -> Latency {
        Latency::from_histogram(&self.merged())
    }
}

/// Per-task buffer that batches samples into a [`Recorder`] to keep lock traffic low;
/// flushes when full and when dropped.
pub struct Batch {
    recorder: Arc<Recorder>,
    hint: usize,
    samples: Vec<u64>,
}

impl Batch {
    /// A buffer feeding `recorder`'s shard `hint`.
    pub fn new(recorder: Arc<Recorder>, hint: usize) -> Self {
        Self {
            recorder,
            hint,
            samples: Vec::with_capacity(LOCAL_BATCH),
        }
    }

    /// Adds one sample in microseconds.
    pub fn push(&mut self, us: u64) {
        self.samples.push(us);
        if self.samples.len() >= LOCAL_BATCH {
            self.flush();
        }
    }

    /// Moves buffered samples into the recorder.
    pub fn flush(&mut self) {
        if !self.samples.is_empty() {
            self.recorder.record_many(self.hint, &self.samples);
            self.samples.clear();
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Latency percentiles in milliseconds, as reported and as checked by `--slo`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Number of samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

impl Latency {
    /// Summarises a histogram of microsecond samples.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| round3(us as f64 / 1000.0);
        Self {
            count: h.len(),
            mean: round3(h.mean() / 1000.0),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }

    /// Value of a named percentile (`p50`, `p90`, `p99`, `p999`, `max`, `mean`).
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "p50" => Some(self.p50),
            "p90" => Some(self.p90),
            "p99" => Some(self.p99),
            "p999" => Some(self.p999),
            "max" => Some(self.max),
            "mean" => Some(self.mean),
            _ => None,
        }
    }
}

/// Rounds to three decimals so reports stay readable.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_from_batches() {
        let recorder = Recorder::shared();
        for task in 0..4 {
            let mut batch = Batch::new(recorder.clone(), task);
            for i in 1..=250u64 {
                batch.push(i * 1000);
            }
        }
        let l = recorder.summary();
        assert_eq!(l.count, 1000);
        assert!((l.p50 - 125.0).abs() < 1.0, "{l:?}");
        assert!((l.max - 250.0).abs() < 0.5, "{l:?}");
        assert_eq!(l.get("p99"), Some(l.p99));
        assert_eq!(l.get("p42"), None);
    }

    #[test]
    fn empty_summary_is_zero() {
        assert_eq!(Recorder::default().summary(), Latency::default());
    }
}
