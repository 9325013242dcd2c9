//! The state a joining viewer receives (`snapshot` of the `joined` frame), typed.
//!
//! Its JSON is exactly what the stream actor sent when it built the snapshot as a
//! `serde_json::Value`: such a value keeps object keys sorted, at every level, so each view here
//! declares its fields in sorted order. Each view takes its record apart without `..`, so a field
//! added to a record does not compile until the snapshot decides where it goes.

use std::collections::VecDeque;

use serde::{Serialize, Serializer};

use crate::ids::{ChatId, DropId, ProductId, StreamId, TenantId, UserId};
use crate::records::{ChatAuthor, ChatMessage, Drop, DropStatus, Stream, StreamStatus};
use crate::timestamp::Timestamp;

/// A stream's state for joiners: `{"chat","drops","pinned","stream","viewers"}`, borrowed from
/// its book, with the viewer count the caller reads from presence.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StreamSnapshot<'a> {
    /// Recent chat, oldest first.
    chat: ChatList<'a>,
    /// Open and sold-out drops (closed ones leave the snapshot).
    drops: DropList<'a>,
    /// The pinned product, if any.
    pinned: Option<&'a ProductId>,
    /// The stream record, its `viewers` the count below.
    stream: StreamView<'a>,
    /// Connections joined now.
    viewers: u64,
}

impl<'a> StreamSnapshot<'a> {
    /// The snapshot of these parts of a stream's state.
    pub(crate) fn new(
        stream: &'a Stream,
        viewers: u64,
        drops: &'a [Drop],
        chat: &'a VecDeque<ChatMessage>,
    ) -> Self {
        Self {
            chat: ChatList(chat),
            drops: DropList(drops),
            pinned: stream.pinned.as_ref(),
            stream: StreamView::new(stream, viewers),
            viewers,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct ChatList<'a>(&'a VecDeque<ChatMessage>);

impl Serialize for ChatList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(ChatView::new))
    }
}

#[derive(Debug, Clone, Copy)]
struct DropList<'a>(&'a [Drop]);

impl Serialize for DropList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(DropView::new))
    }
}

/// A [`Stream`] with its keys in sorted order.
#[derive(Debug, Clone, Copy, Serialize)]
struct StreamView<'a> {
    ended_at: Option<Timestamp>,
    id: &'a StreamId,
    pinned: Option<&'a ProductId>,
    scheduled_at: Option<Timestamp>,
    seller: &'a UserId,
    started_at: Option<Timestamp>,
    status: StreamStatus,
    tenant: &'a TenantId,
    title: &'a str,
    viewers: u64,
}

impl<'a> StreamView<'a> {
    fn new(stream: &'a Stream, viewers: u64) -> Self {
        let Stream {
            id,
            tenant,
            seller,
            title,
            status,
            scheduled_at,
            started_at,
            ended_at,
            pinned,
            viewers: _stored,
        } = stream;
        Self {
            ended_at: *ended_at,
            id,
            pinned: pinned.as_ref(),
            scheduled_at: *scheduled_at,
            seller,
            started_at: *started_at,
            status: *status,
            tenant,
            title,
            viewers,
        }
    }
}

/// A [`Drop`] with its keys in sorted order (its tenant is not on the wire).
#[derive(Debug, Clone, Copy, Serialize)]
struct DropView<'a> {
    closed_reason: Option<&'a str>,
    ends_at: Option<Timestamp>,
    hold_seconds: i64,
    id: &'a DropId,
    opened_at: Timestamp,
    per_user_limit: i64,
    product: &'a ProductId,
    quantity: i64,
    remaining: i64,
    reserved: i64,
    sold: i64,
    status: DropStatus,
    stream: &'a StreamId,
}

impl<'a> DropView<'a> {
    fn new(drop: &'a Drop) -> Self {
        let Drop {
            id,
            tenant: _not_on_the_wire,
            stream,
            product,
            quantity,
            remaining,
            reserved,
            sold,
            per_user_limit,
            hold_seconds,
            status,
            opened_at,
            ends_at,
            closed_reason,
        } = drop;
        Self {
            closed_reason: closed_reason.as_deref(),
            ends_at: *ends_at,
            hold_seconds: *hold_seconds,
            id,
            opened_at: *opened_at,
            per_user_limit: *per_user_limit,
            product,
            quantity: *quantity,
            remaining: *remaining,
            reserved: *reserved,
            sold: *sold,
            status: *status,
            stream,
        }
    }
}

/// A [`ChatMessage`] with its keys in sorted order (stream and tenant are not on the wire).
#[derive(Debug, Clone, Copy, Serialize)]
struct ChatView<'a> {
    at: Timestamp,
    id: &'a ChatId,
    text: &'a str,
    user: AuthorView<'a>,
}

/// A [`ChatAuthor`] with its keys in sorted order.
#[derive(Debug, Clone, Copy, Serialize)]
struct AuthorView<'a> {
    id: &'a UserId,
    name: &'a str,
}

impl<'a> AuthorView<'a> {
    fn new(author: &'a ChatAuthor) -> Self {
        let ChatAuthor { id, name } = author;
        Self { id, name }
    }
}

impl<'a> ChatView<'a> {
    fn new(message: &'a ChatMessage) -> Self {
        let ChatMessage {
            id,
            stream: _not_on_the_wire,
            tenant: _implied,
            user,
            text,
            at,
        } = message;
        Self {
            at: *at,
            id,
            text,
            user: AuthorView::new(user),
        }
    }
}
