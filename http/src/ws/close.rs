//! Close codes of the protocol and the disconnect reasons they are counted under.

/// Why a connection ends, with its close code and metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed or went away.
    ClientClosed,
    /// The socket failed.
    TransportError,
    /// No sign of life for the idle timeout.
    Idle,
    /// The token expired (1008).
    TokenExpired,
    /// The user was banned from the tenant (1008).
    Banned,
    /// A frame over 16 KiB (1009).
    TooLarge,
    /// Bytes that are not RFC 6455 frames: unmasked, reserved bits, bad opcode, fragmentation or
    /// length, or a close frame of one byte or with a code that may not be sent (1002).
    ProtocolError,
    /// A text message or a close reason that is not UTF-8 (1007).
    InvalidPayload,
    /// The session failed (1011).
    Internal,
    /// The server is draining (1012).
    Restarting,
    /// The client could not keep up (4008).
    SlowConsumer,
}

impl CloseReason {
    /// The close code sent to the client.
    pub const fn code(self) -> u16 {
        match self {
            Self::ClientClosed | Self::TransportError | Self::Idle => 1000,
            Self::TokenExpired | Self::Banned => 1008,
            Self::TooLarge => 1009,
            Self::ProtocolError => 1002,
            Self::InvalidPayload => 1007,
            Self::Internal => 1011,
            Self::Restarting => 1012,
            Self::SlowConsumer => 4008,
        }
    }

    /// The close reason text, and the `reason` label of `websocket_disconnects_total`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::TransportError => "transport_error",
            Self::Idle => "idle_timeout",
            Self::TokenExpired => "token_expired",
            Self::Banned => "banned",
            Self::TooLarge => "too_large",
            Self::ProtocolError => "protocol_error",
            Self::InvalidPayload => "invalid_payload",
            Self::Internal => "internal",
            Self::Restarting => "restarting",
            Self::SlowConsumer => "slow_consumer",
        }
    }
}

impl CloseReason {
    /// Every reason, so `websocket_disconnects_total` can be exported at zero for each label from
    /// the start (a test below fails to compile when a variant is missing from this list).
    pub const ALL: [Self; 11] = [
        Self::ClientClosed,
        Self::TransportError,
        Self::Idle,
        Self::TokenExpired,
        Self::TooLarge,
        Self::ProtocolError,
        Self::InvalidPayload,
        Self::Internal,
        Self::Restarting,
        Self::SlowConsumer,
        Self::Banned,
    ];
}

#[cfg(test)]
mod all_tests {
    use super::CloseReason;

    /// The position of each reason in [`CloseReason::ALL`]; exhaustive, so a new variant must be
    /// added here, and the assertion below then makes sure it is in `ALL` too.
    fn position(reason: CloseReason) -> usize {
        match reason {
            CloseReason::ClientClosed => 0,
            CloseReason::TransportError => 1,
            CloseReason::Idle => 2,
            CloseReason::TokenExpired => 3,
            CloseReason::TooLarge => 4,
            CloseReason::ProtocolError => 5,
            CloseReason::InvalidPayload => 6,
            CloseReason::Internal => 7,
            CloseReason::Restarting => 8,
            CloseReason::SlowConsumer => 9,
            CloseReason::Banned => 10,
        }
    }

    #[test]
    fn all_lists_every_reason_once() {
        for (i, reason) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(position(*reason), i, "{reason:?}");
        }
    }
}
