//! The seller side of a run: one connection that joins the stream and publishes chat at a
//! steady rate, each text carrying its publish index and send time, while a reader task
//! counts the server's acknowledgements and remembers the highest seq assigned.

use crate::client::{Endpoint, Incoming, read_frame};
use crate::payload;
use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

/// What the publisher did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Published {
    /// Chat ops sent.
    pub sent: u64,
    /// Chats acknowledged with a seq.
    pub acked: u64,
    /// Chats refused with an error frame.
    pub rejected: u64,
    /// Highest seq acknowledged.
    pub last_seq: u64,
    /// Worst lateness against the send schedule, ms.
    pub max_late_ms: f64,
    /// Whether the seller's connection broke.
    pub connection_lost: bool,
    /// Refusals by error code.
    pub errors: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Shared {
    sent: AtomicU64,
    acked: AtomicU64,
    rejected: AtomicU64,
    last_seq: AtomicU64,
    lost: AtomicBool,
    /// Set before the publisher closes its own socket: the close that follows is not a loss.
    closing: AtomicBool,
    writer_done: AtomicBool,
    errors: Mutex<BTreeMap<String, u64>>,
}

/// A running publisher.
pub struct Publisher {
    shared: Arc<Shared>,
    stop: watch::Sender<u8>,
    task: tokio::task::JoinHandle<f64>,
    reader: tokio::task::JoinHandle<()>,
}

impl Publisher {
    /// Connects as the seller, joins `stream` and publishes `rate` chats/s of `size` bytes
    /// until stopped (rate 0: publishes nothing).
    pub async fn start(
        endpoint: &Endpoint,
        token: &str,
        stream: &str,
        rate: f64,
        size: usize,
    ) -> anyhow::Result<Self> {
        let (conn, _joined) = endpoint
            .connect_and_join(token, usize::MAX / 2, stream, None)
            .await
            .context("seller connection")?;
        let (mut sink, mut source) = conn.into_ws().split();
        let shared = Arc::new(Shared::default());
        let reader = {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    match read_frame(&mut source).await {
                        Incoming::Frame(f) if is_chat_ref(f.reference.as_deref()) => {
                            if f.kind == "ok" {
                                shared.acked.fetch_add(1, Relaxed);
                                shared.last_seq.fetch_max(f.seq.unwrap_or(0), Relaxed);
                            } else if f.kind == "error" {
                                shared.rejected.fetch_add(1, Relaxed);
                                let code = f.code.unwrap_or_else(|| "unknown".into());
                                let mut errors =
                                    shared.errors.lock().unwrap_or_else(|p| p.into_inner());
                                *errors.entry(code).or_default() += 1;
                            }
                        }
                        Incoming::Frame(_) => {}
                        Incoming::Closed(_) => {
                            if !shared.closing.load(Relaxed) {
                                shared.lost.store(true, Relaxed);
                            }
                            return;
                        }
                    }
                }
            })
        };
        let (stop, mut stopped) = watch::channel(0u8);
        let task = {
            let shared = shared.clone();
            let stream = stream.to_string();
            tokio::spawn(async move {
                let mut max_late = Duration::ZERO;
                if rate > 0.0 {
                    let period = Duration::from_secs_f64(1.0 / rate);
                    let start = tokio::time::Instant::now();
                    for index in 0u64.. {
                        let due = start + period.mul_f64(index as f64);
                        tokio::select! {
                            _ = tokio::time::sleep_until(due) => {}
                            _ = stopped.changed() => break,
                        }
                        max_late = max_late.max(tokio::time::Instant::now() - due);
                        let text = payload::encode(index, payload::now_us(), size);
                        let op = serde_json::json!({
                            "op": "chat", "stream": stream, "text": text, "ref": format!("c{index}"),
                        });
                        if sink.send(Message::text(op.to_string())).await.is_err() {
                            shared.lost.store(true, Relaxed);
                            break;
                        }
                        shared.sent.fetch_add(1, Relaxed);
                    }
                } else {
                    let _ = stopped.changed().await;
                }
                shared.writer_done.store(true, Relaxed);
                // Keep the socket open until the caller has collected the acknowledgements.
                let _ = stopped.wait_for(|&s| s >= 2).await;
                shared.closing.store(true, Relaxed);
                let _ = tokio::time::timeout(Duration::from_millis(500), sink.close()).await;
                max_late.as_secs_f64() * 1000.0
            })
        };
        Ok(Self {
            shared,
            stop,
            task,
            reader,
        })
    }

    /// Chats sent so far.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Relaxed)
    }

    /// Stops publishing, waits up to `ack_wait` for outstanding acknowledgements, closes.
    pub async fn finish(self, ack_wait: Duration) -> Published {
        let _ = self.stop.send(1);
        let deadline = tokio::time::Instant::now() + ack_wait;
        let s = &self.shared;
        // The writer stops within one send; then every sent chat needs an answer.
        while !s.writer_done.load(Relaxed) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        while s.acked.load(Relaxed) + s.rejected.load(Relaxed) < s.sent.load(Relaxed)
            && !s.lost.load(Relaxed)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.stop.send(2);
        let max_late_ms = self.task.await.unwrap_or(0.0);
        self.reader.abort();
        Published {
            sent: s.sent.load(Relaxed),
            acked: s.acked.load(Relaxed),
            rejected: s.rejected.load(Relaxed),
            last_seq: s.last_seq.load(Relaxed),
            max_late_ms: crate::latency::round3(max_late_ms),
            connection_lost: s.lost.load(Relaxed),
            errors: s.errors.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

fn is_chat_ref(reference: Option<&str>) -> bool {
    reference.is_some_and(|r| r.starts_with('c'))
}
