//! Storage metrics (contract section 5): batch sizes and commit latency of the batched writes.

use std::time::Instant;

/// Which batched write a measurement belongs to (the `kind` label).
#[derive(Debug, Clone, Copy)]
pub(crate) enum BatchKind {
    Claims,
    Chat,
}

impl BatchKind {
    const fn label(self) -> &'static str {
        match self {
            Self::Claims => "claims",
            Self::Chat => "chat",
        }
    }
}

/// Records the batch size now and the commit duration when [`BatchTimer::finish`] is called.
pub(crate) struct BatchTimer {
    kind: BatchKind,
    started: Instant,
}

impl BatchTimer {
    pub(crate) fn start(kind: BatchKind, len: usize) -> Self {
        metrics::histogram!("liveshop_storage_batch_size", "kind" => kind.label())
            .record(len as f64);
        Self {
            kind,
            started: Instant::now(),
        }
    }

    pub(crate) fn finish(self) {
        metrics::histogram!("liveshop_storage_commit_duration_seconds", "kind" => self.kind.label())
            .record(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString,
        Unit,
    };

    use super::*;

    /// Names, `kind` labels and values of every histogram sample.
    type Samples = Arc<Mutex<Vec<(String, String, f64)>>>;

    struct Capture(Samples);

    struct Sample {
        name: String,
        kind: String,
        samples: Samples,
    }

    impl HistogramFn for Sample {
        fn record(&self, value: f64) {
            self.samples
                .lock()
                .unwrap()
                .push((self.name.clone(), self.kind.clone(), value));
        }
    }

    impl Recorder for Capture {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::noop()
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            let kind = key
                .labels()
                .find(|l| l.key() == "kind")
                .map(|l| l.value().to_owned())
                .unwrap_or_default();
            Histogram::from_arc(Arc::new(Sample {
                name: key.name().to_owned(),
                kind,
                samples: Arc::clone(&self.0),
            }))
        }
    }

    #[test]
    fn batch_timer_records_size_and_duration_with_the_kind_label() {
        let samples = Samples::default();
        let recorder = Capture(Arc::clone(&samples));
        metrics::with_local_recorder(&recorder, || {
            BatchTimer::start(BatchKind::Claims, 7).finish();
            BatchTimer::start(BatchKind::Chat, 3).finish();
        });
        let samples = samples.lock().unwrap();
        let names: Vec<_> = samples
            .iter()
            .map(|(name, kind, _)| format!("{name}{{kind={kind}}}"))
            .collect();
        assert_eq!(
            names,
            [
                "liveshop_storage_batch_size{kind=claims}",
                "liveshop_storage_commit_duration_seconds{kind=claims}",
                "liveshop_storage_batch_size{kind=chat}",
                "liveshop_storage_commit_duration_seconds{kind=chat}",
            ]
        );
        assert_eq!(samples[0].2, 7.0);
        assert_eq!(samples[2].2, 3.0);
        assert!(samples[1].2 >= 0.0);
    }
}
