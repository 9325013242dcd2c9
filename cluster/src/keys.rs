//! Every Redis key and channel the cluster uses. A stream's keys share the hash tag `{<stream>}`,
//! so a Lua script may touch all of them (and a Redis Cluster would keep them on one shard).
//!
//! | name | type | what |
//! | --- | --- | --- |
//! | `liveshop:{s}:ev` | channel | the stream's events and control messages |
//! | `liveshop:{s}:hist` | stream | its recent ordered events (field `e` epoch, `s` seq, `b` bytes) |
//! | `liveshop:{s}:meta` | hash | `epoch`, `seq`: the last ordered event in the history |
//! | `liveshop:{s}:lease` | string | the owner node's id, with the lease's expiry |
//! | `liveshop:{s}:handover` | string | set for a minute by an owner that handed the stream over in order |
//! | `liveshop:{s}:viewers` | hash | per node, `count:unix_ms` |
//! | `liveshop:nodes` | hash | per node, its heartbeat (JSON) |
//! | `liveshop:node:<id>:rpc` | channel | requests relayed to that node, and answers to its requests |
//! | `liveshop:notify` | channel | private frames for users, to every node |

use liveshop_engine::StreamId;

/// Prefix of every key and channel.
pub const PREFIX: &str = "liveshop";

/// The channel a stream's events travel on.
pub fn events(stream: &StreamId) -> String {
    format!("{PREFIX}:{{{stream}}}:ev")
}

/// The stream whose events travel on `channel` (the inverse of [`events`]).
pub fn stream_of_events(channel: &str) -> Option<StreamId> {
    let inner = channel
        .strip_prefix(PREFIX)?
        .strip_prefix(":{")?
        .strip_suffix("}:ev")?;
    Some(StreamId::from_trusted(inner))
}

/// The Redis stream holding a stream's recent ordered events.
pub fn history(stream: &StreamId) -> String {
    format!("{PREFIX}:{{{stream}}}:hist")
}

/// The hash with the epoch and seq of a stream's last ordered event in its history.
pub fn meta(stream: &StreamId) -> String {
    format!("{PREFIX}:{{{stream}}}:meta")
}

/// The owner lease of a stream.
pub fn lease(stream: &StreamId) -> String {
    format!("{PREFIX}:{{{stream}}}:lease")
}

/// Set by an owner that handed the stream over in order (its whole history published): the next
/// owner continues the epoch of the history's meta instead of beginning a new one.
pub fn handover(stream: &StreamId) -> String {
    format!("{PREFIX}:{{{stream}}}:handover")
}

/// Per-node viewer counts of a stream.
pub fn viewers(stream: &StreamId) -> String {
    format!("{PREFIX}:{{{stream}}}:viewers")
}

/// The node list.
pub const NODES: &str = "liveshop:nodes";

/// The channel a node receives relayed requests and answers on.
pub fn node_rpc(node: &str) -> String {
    format!("{PREFIX}:node:{node}:rpc")
}

/// The channel private frames for users travel on.
pub const NOTIFY: &str = "liveshop:notify";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_found_again_from_its_events_channel() {
        let stream = StreamId::from_trusted("str_a:b}c");
        assert_eq!(stream_of_events(&events(&stream)), Some(stream));
        assert_eq!(stream_of_events(NOTIFY), None);
    }
}
