//! The fan-out hot path, without sockets: encode one chat event once, frame it once, then hand
//! the same bytes to every subscriber of the stream from one loop.
//!
//! * `encode/chat_200B`: `EventLog::append` of one chat event with a 200-byte text (number,
//!   encode to JSON `Bytes`), then `Ring::push` (kept for resume by the hub).
//! * `fanout/10000`: the same encode and keep, one WebSocket framing, then `Subscribers::deliver`
//!   to 10,000 subscribers whose `deliver` only counts (the socket write is left out: it is the kernel's
//!   cost, measured end to end by the peer benchmark). Per-subscriber cost = time / 10,000.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use liveshop_actors::connection::Connection;
use liveshop_actors::fanout::hub::Subscribers;
use liveshop_actors::fanout::ring::Ring;
use liveshop_benches::{TEXT_BYTES, chat_body, stream_id};
use liveshop_engine::StreamId;
use liveshop_engine::frames::ws_text_frame;
use liveshop_engine::limits::Limits;
use liveshop_engine::stream::EventLog;

/// A subscriber whose socket write is replaced by a counter.
struct Counting {
    id: u64,
    delivered: AtomicU64,
}

impl Connection for Counting {
    fn id(&self) -> u64 {
        self.id
    }
    fn deliver(&self, frame: &Bytes) -> bool {
        self.delivered
            .fetch_add(u64::from(!frame.is_empty()), Ordering::Relaxed);
        true
    }
    fn rejoin(&self, _: &StreamId) {}
    fn close_banned(&self) {}
}

/// A new epoch's log and the resume ring a hub keeps for it.
fn log_and_ring(stream: StreamId) -> (EventLog, Ring) {
    let mut ring = Ring::new(Limits::default().resume_buffer);
    ring.reset(1, 0);
    (EventLog::new(stream, 1), ring)
}

/// Subscribers in the fan-out bench.
const SUBSCRIBERS: usize = 10_000;

fn encode(c: &mut Criterion) {
    let body = chat_body(TEXT_BYTES);
    let (mut log, mut ring) = log_and_ring(stream_id());
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("chat_200B", |b| {
        b.iter_batched(
            || body.clone(),
            |body| {
                let (seq, json) = log.append(body);
                ring.push(json);
                black_box(seq)
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn fanout(c: &mut Criterion) {
    let body = chat_body(TEXT_BYTES);
    let stream = stream_id();
    let (mut log, mut ring) = log_and_ring(stream);
    let subscribers: Vec<Arc<Counting>> = (0..SUBSCRIBERS as u64)
        .map(|id| {
            Arc::new(Counting {
                id,
                delivered: AtomicU64::new(0),
            })
        })
        .collect();
    let mut fanout = Subscribers::default();
    for s in &subscribers {
        fanout.subscribe(s.clone(), &[]);
    }
    assert_eq!(fanout.len(), SUBSCRIBERS);

    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    let mut rounds = 0u64;
    group.bench_function(SUBSCRIBERS.to_string(), |b| {
        b.iter_batched(
            || body.clone(),
            |body| {
                let (_, json) = log.append(body);
                ring.push(json.clone());
                let frame = ws_text_frame(&json);
                rounds += 1;
                black_box(fanout.deliver(&frame, 1))
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();

    // Every subscriber got every event.
    for s in &subscribers {
        assert_eq!(s.delivered.load(Ordering::Relaxed), rounds);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = encode, fanout
}
criterion_main!(benches);
