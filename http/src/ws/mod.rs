//! The WebSocket gateway at `/v1/ws` (contract v1, section 4).
//!
//! Each connection is three parts: the reader loop (this task: decode, rate-limit, forward to the
//! session actor), the session actor (protocol operations), and the writer task (replies and the
//! joined streams' shared event rings, batched into as few flushes as possible).

pub mod close;
pub mod connection;
pub mod gateway;
pub mod writer;
