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
