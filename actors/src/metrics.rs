//! Metric names and small helpers, so every name is spelled once.
//!
//! Labels never carry user, stream or tenant ids: cardinality stays bounded by the kinds below.

/// Gauge of live actors, by `kind`.
pub const ACTORS: &str = "liveshop_actors";
/// Counter of actor restarts by their supervisor, by `kind`.
pub const ACTOR_RESTARTS: &str = "liveshop_actor_restarts_total";
/// Counter of failures that exhausted the restart budget, by `kind`.
pub const ACTOR_ESCALATIONS: &str = "liveshop_actor_escalations_total";
/// Gauge of the deepest mailbox seen at the last sample, by `kind`.
pub const ACTOR_MAILBOX_DEPTH: &str = "liveshop_actor_mailbox_depth";
/// Histogram of message handling time, by `kind`.
pub const ACTOR_MESSAGE_SECONDS: &str = "liveshop_actor_message_duration_seconds";
/// Counter of event frames written to sockets.
pub const EVENTS_DELIVERED: &str = "liveshop_events_delivered_total";
/// Histogram of the time a stream actor spends encoding and publishing one event on the bus.
pub const FANOUT_SECONDS: &str = "liveshop_fanout_duration_seconds";
/// Counter of connections closed because they could not keep up.
pub const SLOW_CONSUMERS: &str = "liveshop_slow_consumers_total";
/// Counter of frames a slow connection had not taken when it was closed (4008).
pub const BROADCAST_LAG: &str = "liveshop_broadcast_lag_events_total";
/// Counter of claim decisions, by `result`.
pub const CLAIMS: &str = "liveshop_claims_total";
/// Counter of rows that storage refused for themselves and that were set aside from their batch,
/// by `kind` (`claims`, `chat`, `users_seen`).
pub const ROWS_REFUSED: &str = "liveshop_storage_rows_refused_total";
/// The `kind` labels of [`ROWS_REFUSED`].
pub const ROWS_REFUSED_KINDS: [&str; 3] = ["claims", "chat", "users_seen"];

/// Counter of chat messages refused by the stream's moderation, by `reason`.
pub const CHAT_MODERATED: &str = "liveshop_chat_moderated_total";
/// The `reason` labels of [`CHAT_MODERATED`]: a mute, a blocked word, slow mode.
pub const CHAT_MODERATED_REASONS: [&str; 3] = ["muted", "blocked", "slow_mode"];
/// Counter of moderation actions taken, by `action` (the log's action names).
pub const MODERATION_ACTIONS: &str = "liveshop_moderation_actions_total";
/// The `action` labels of [`MODERATION_ACTIONS`].
pub const MODERATION_ACTION_NAMES: [&str; 5] =
    ["delete_message", "mute", "ban", "unban", "chat_settings"];

/// Actor kinds used as the `kind` label.
pub mod kind {
    /// A tenant actor.
    pub const TENANT: &str = "tenant";
    /// A stream actor.
    pub const STREAM: &str = "stream";
    /// A drop actor.
    pub const DROP: &str = "drop";
    /// A session actor.
    pub const SESSION: &str = "session";
    /// The chat persister.
    pub const PERSISTER: &str = "persister";
    /// The root supervisor.
    pub const SUPERVISOR: &str = "supervisor";
}

/// Counts an actor of `kind` as alive until the guard is dropped.
#[derive(Debug)]
pub struct AliveGuard(&'static str);

impl AliveGuard {
    /// Raises the `liveshop_actors{kind}` gauge.
    pub fn new(kind: &'static str) -> Self {
        metrics::gauge!(ACTORS, "kind" => kind).increment(1.0);
        Self(kind)
    }
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        metrics::gauge!(ACTORS, "kind" => self.0).decrement(1.0);
    }
}

/// Records how long one message took to handle, by actor kind.
pub fn record_handling(kind: &'static str, started: std::time::Instant) {
    metrics::histogram!(ACTOR_MESSAGE_SECONDS, "kind" => kind)
        .record(started.elapsed().as_secs_f64());
}
