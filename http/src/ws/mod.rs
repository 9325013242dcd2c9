//! The WebSocket gateway at `/v1/ws` (contract v1, section 4).
//!
//! Each connection is three parts: the shared socket ([`conn::Conn`]: direct non-blocking writes,
//! a bounded buffer only when the socket is full), the reader loop ([`connection`]: decode,
//! rate-limit, forward to the session actor), and the session actor (protocol operations). Stream
//! events reach the socket from each stream's fan-out task, never through the reader or the actor.

pub mod close;
pub mod conn;
pub mod connection;
pub mod gateway;
pub mod keepalive;
