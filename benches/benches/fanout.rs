//! The fan-out hot path, without sockets: encode one chat event once, then hand the same bytes to
//! every subscriber of the stream through the in-process broker's broadcast ring.
//!
//! * `encode/chat_200B`: `EventLog::append` of one chat event with a 200-byte text
//!   (number, encode to JSON `Bytes`, keep for resume).
//! * `fanout/10000`: the same encode, one `Broker::publish`, then every one of 10,000 subscribers
//!   takes the item with `try_recv` (what each connection's writer task does before its socket
//!   write). Per-subscriber cost = time / 10,000.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use liveshop_actors::broker::{Broker, InProcessBroker, StreamOut};
use liveshop_benches::{TEXT_BYTES, chat_body, stream_id};
use liveshop_engine::limits::Limits;
use liveshop_engine::stream::EventLog;
use tokio::sync::broadcast;

/// Subscribers in the fan-out bench.
const SUBSCRIBERS: usize = 10_000;

fn encode(c: &mut Criterion) {
    let body = chat_body(TEXT_BYTES);
    let mut log = EventLog::new(stream_id(), 1, Limits::default().resume_buffer);
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("chat_200B", |b| {
        b.iter_batched(
            || body.clone(),
            |body| black_box(log.append(body)),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn fanout(c: &mut Criterion) {
    let body = chat_body(TEXT_BYTES);
    let stream = stream_id();
    let mut log = EventLog::new(stream.clone(), 1, Limits::default().resume_buffer);
    // Every receiver drains the ring each iteration, so a small ring never lags; 1,024 leaves room.
    let broker = InProcessBroker::new(1024);
    let mut receivers: Vec<broadcast::Receiver<StreamOut>> = (0..SUBSCRIBERS)
        .map(|_| broker.subscribe(&stream))
        .collect();
    assert_eq!(broker.subscribers(&stream), SUBSCRIBERS);

    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    group.bench_function(SUBSCRIBERS.to_string(), |b| {
        b.iter_batched(
            || body.clone(),
            |body| {
                let (_, bytes) = log.append(body);
                broker.publish(&stream, StreamOut::Event(bytes));
                let mut delivered = 0usize;
                for rx in &mut receivers {
                    if let Ok(StreamOut::Event(bytes)) = rx.try_recv() {
                        delivered += usize::from(!bytes.is_empty());
                    }
                }
                assert_eq!(delivered, SUBSCRIBERS);
                delivered
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();

    // Every subscriber got every event and nothing is left behind.
    for rx in &mut receivers {
        assert!(rx.try_recv().is_err());
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
