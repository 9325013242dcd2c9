//! The rules of one stream as its actor holds them: typed state, commands in, effects out.
//!
//! A [`StreamBook`] is the stream's state (its record, open and sold-out drops, recent chat, chat
//! allowances, reaction tallies). The actor turns every message into a command and does what the
//! returned [`Effects`] say (publish, persist, stop); the book does no IO and reads no clock: `now`,
//! ids and the viewer count come in.
//!
//! Two kinds of commands:
//! - [`Command`]s change the book at once ([`StreamBook::apply`]): chat, reactions, a drop's new
//!   counts, the timer.
//! - [`DurableCommand`]s must be stored before anything changes: [`StreamBook::plan`] checks the
//!   rules and returns a [`Change`] holding the [`Write`]; the actor performs the write and only
//!   when it succeeded calls [`StreamBook::commit`]. A failed write drops the change and leaves
//!   the book as it was. The actor awaits the write before its next message, so no other change
//!   falls between a plan and its commit.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use serde_json::Value;

use crate::auth::{Action, Identity, Role, StreamRef, permit};
use crate::chat::validate_chat_text;
use crate::frames::{EventBody, pinned_body};
use crate::ids::{ChatId, DropId, ProductId, StreamId, UserId};
use crate::limits::Limits;
use crate::moderation::{ChatSettings, ModerationAction, ModerationEntry, Mute, SettingsPatch};
use crate::records::{ChatAuthor, ChatMessage, Drop, DropStatus, Stream, StreamStatus};
use crate::rejection::{ErrorCode, Rejection};
use crate::storage::StreamModeration;
use crate::stream::{Lifecycle, accepts_interaction, transition};
use crate::timestamp::Timestamp;

mod allowance;
mod chat_rules;
mod snapshot;

pub use allowance::{BUCKET_IDLE_MS, ChatAllowances, idle_after_ms};
use chat_rules::ChatRules;
pub use chat_rules::{KNOWN_MESSAGES, Known, is_staff, muted};
pub use snapshot::StreamSnapshot;

/// Viewer counts are sent at most this often (milliseconds).
pub const VIEWERS_EVERY_MS: i64 = 1_000;

/// How the author of a chat message reaches the stream.
///
/// Its wire form travels between nodes (a relayed chat), so it stays as it was when clusters
/// of two releases may mix: a new field goes beside it, with a default, never into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChatAccess {
    /// Their connection joined the stream.
    Joined,
    /// Their connection did not join; with this role they may still publish when they are the
    /// stream's broadcaster (its seller, or an admin), see [`Action::ChatWithoutJoin`].
    NotJoined(Role),
}

/// A chat message as the author sent it, with the id it gets if accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatCommand {
    /// Id for the message (made by the caller: the engine has no id generator).
    pub id: ChatId,
    /// Who wrote it.
    pub author: ChatAuthor,
    /// Raw text, trimmed and checked by [`validate_chat_text`].
    pub text: String,
    /// Whether the author joined.
    pub access: ChatAccess,
    /// The author's role: staff (sellers, moderators, admins) are never slowed by slow mode.
    pub role: Role,
}

/// What changes the book at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A chat message: published in order and persisted. Its effects hold exactly one ordered
    /// publish, whose seq answers the author.
    Chat(ChatCommand),
    /// A reaction (one of [`crate::chat::EMOJIS`]); tallied while live, sent on the tick.
    React(&'static str),
    /// A drop's counts or status changed (its actor says so): refreshed in the snapshot, and a
    /// closed drop leaves it.
    DropChanged(Box<Drop>),
    /// The actor's timer: sends the reaction tallies and the viewer count, forgets idle chat
    /// allowances, and stops a stream that ended once nobody watches.
    Tick {
        /// Connections joined now.
        viewers: u64,
    },
}

/// What must be stored before the book changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurableCommand {
    /// Start or end the show.
    Lifecycle(Lifecycle),
    /// Pin a product (already checked to belong to the tenant).
    Pin(ProductId),
    /// Open a drop (status open) in this stream; only while live.
    OpenDrop(Box<Drop>),
    /// Delete a chat message of this stream (in any status): announced by `chat_deleted`, left
    /// out of later snapshots. The actor asks storage first when the book does not know the
    /// message ([`StreamBook::known_message`]) and says whether storage has it.
    DeleteChat {
        /// The message.
        id: ChatId,
        /// The moderator.
        actor: UserId,
        /// Storage holds the message, not deleted.
        stored: bool,
    },
    /// Mute a user in this stream's chat for a while.
    Mute {
        /// Who is muted.
        user: UserId,
        /// For how long, already checked (see [`crate::moderation::validate_duration`]).
        duration_seconds: i64,
        /// The moderator.
        actor: UserId,
        /// Why, already checked.
        reason: Option<String>,
    },
    /// Change slow mode or the blocked words.
    ChatSettings {
        /// What changes.
        patch: SettingsPatch,
        /// The moderator.
        actor: UserId,
    },
}

/// The storage write a [`Change`] waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// The stream's new status with its start and end times.
    StreamStatus {
        /// The stream.
        stream: StreamId,
        /// New status.
        status: StreamStatus,
        /// When it went live.
        started_at: Option<Timestamp>,
        /// When it ended.
        ended_at: Option<Timestamp>,
    },
    /// The stream's pinned product.
    Pinned {
        /// The stream.
        stream: StreamId,
        /// The product now pinned.
        product: ProductId,
    },
    /// A new drop.
    NewDrop(Box<Drop>),
    /// A deleted chat message, with its log entry.
    DeleteChat {
        /// The stream.
        stream: StreamId,
        /// The message.
        message: ChatId,
        /// The audit log row.
        entry: ModerationEntry,
    },
    /// A mute, with its log entry.
    Mute {
        /// The mute.
        mute: Mute,
        /// The audit log row.
        entry: ModerationEntry,
    },
    /// The stream's new chat settings, with their log entry.
    ChatSettings {
        /// The stream.
        stream: StreamId,
        /// All the settings after the change.
        settings: ChatSettings,
        /// The audit log row.
        entry: ModerationEntry,
    },
}

/// A checked change waiting for its write: perform [`Change::write`], then
/// [`StreamBook::commit`] it; drop it if the write failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    write: Write,
    /// The ordered event announcing the change, if viewers see it, built at planning so
    /// committing cannot fail.
    announce: Option<EventBody>,
}

impl Change {
    /// What must be stored first.
    pub fn write(&self) -> &Write {
        &self.write
    }
}

/// One thing the actor must do, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Number the event, keep it for resume and send it to the stream's viewers.
    PublishOrdered(EventBody),
    /// Send the event to the stream's viewers without a seq.
    PublishEphemeral(EventBody),
    /// Store the chat message (batched, off the hot path).
    PersistChat(ChatMessage),
    /// The stream ended: close these drops, still open or sold out, with reason `stream_ended`.
    CloseDrops(Vec<DropId>),
    /// The stream ended and nobody watches: stop its actor.
    Stop,
}

/// What a command asks of the actor, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects(Vec<Effect>);

impl Effects {
    /// The effects, in order.
    pub fn as_slice(&self) -> &[Effect] {
        &self.0
    }

    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn push(&mut self, effect: Effect) {
        self.0.push(effect);
    }
}

impl IntoIterator for Effects {
    type Item = Effect;
    type IntoIter = std::vec::IntoIter<Effect>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl From<Vec<Effect>> for Effects {
    fn from(effects: Vec<Effect>) -> Self {
        Self(effects)
    }
}

/// The typed state of one stream, and its rules.
#[derive(Debug, Clone)]
pub struct StreamBook {
    /// The stream record as stored (its `viewers` is not kept here: presence counts them).
    record: Stream,
    /// Rates and sizes.
    limits: Limits,
    /// Open and sold-out drops, in the order they last changed.
    drops: Vec<Drop>,
    /// The latest chat messages, oldest first, at most `limits.snapshot_chat`.
    chat: VecDeque<ChatMessage>,
    /// Per-author chat allowances.
    allowances: ChatAllowances,
    /// Reactions since the last tick.
    reactions: BTreeMap<String, u64>,
    /// The viewer count last sent and when.
    viewers_sent: Option<(u64, Timestamp)>,
    /// Grows with every change a snapshot shows, so the actor knows when its cached one is stale.
    revision: u64,
    /// Mutes, slow mode, blocked words and the messages there are to delete.
    rules: ChatRules,
}

impl StreamBook {
    /// The book of a stream as storage has it: its record, its drops (closed ones are left out)
    /// and its recent chat, oldest first (only the last `limits.snapshot_chat` are kept).
    pub fn restore(
        record: Stream,
        drops: impl IntoIterator<Item = Drop>,
        recent_chat: impl IntoIterator<Item = ChatMessage>,
        limits: Limits,
    ) -> Self {
        let mut book = Self {
            record,
            limits,
            drops: drops
                .into_iter()
                .filter(|d| d.status != DropStatus::Closed)
                .collect(),
            chat: VecDeque::new(),
            allowances: ChatAllowances::new(),
            reactions: BTreeMap::new(),
            viewers_sent: None,
            revision: 0,
            rules: ChatRules::default(),
        };
        for message in recent_chat {
            book.rules.remember(message.id.clone());
            book.remember_chat(message);
        }
        book
    }

    /// The book with the stream's stored moderation: its chat settings and the mutes that hold.
    pub fn moderated(mut self, moderation: StreamModeration) -> Self {
        let StreamModeration { settings, mutes } = moderation;
        self.rules = ChatRules::new(settings, mutes);
        for message in &self.chat {
            self.rules.remember(message.id.clone());
        }
        self
    }

    /// The stream's slow mode and blocked words.
    pub fn chat_settings(&self) -> &ChatSettings {
        self.rules.settings()
    }

    /// Users muted now (lapsed mutes are forgotten on the tick).
    pub fn muted_users(&self) -> usize {
        self.rules.muted_count()
    }

    /// Whether the book knows a message a moderator wants deleted.
    pub fn known_message(&self, id: &ChatId) -> Known {
        self.rules.known(id)
    }

    /// The stream record (its `viewers` as stored; presence has the live count).
    pub fn stream(&self) -> &Stream {
        &self.record
    }

    /// The stream's id.
    pub fn id(&self) -> &StreamId {
        &self.record.id
    }

    /// Open and sold-out drops.
    pub fn drops(&self) -> &[Drop] {
        &self.drops
    }

    /// Recent chat, oldest first.
    pub fn recent_chat(&self) -> impl ExactSizeIterator<Item = &ChatMessage> {
        self.chat.iter()
    }

    /// Authors whose chat allowance is remembered.
    pub fn allowances(&self) -> &ChatAllowances {
        &self.allowances
    }

    /// Changes with every change a snapshot shows (a cached snapshot with another revision, or
    /// another viewer count, is stale).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The state joiners receive, with the viewer count read from presence.
    pub fn snapshot(&self, viewers: u64) -> StreamSnapshot<'_> {
        StreamSnapshot::new(&self.record, viewers, &self.drops, &self.chat)
    }

    /// Applies a command that needs no write first. A refusal leaves the book unchanged.
    pub fn apply(&mut self, command: Command, now: Timestamp) -> Result<Effects, Rejection> {
        match command {
            Command::Chat(chat) => self.chat(chat, now),
            Command::React(emoji) => {
                if self.record.status == StreamStatus::Live {
                    *self.reactions.entry(emoji.to_owned()).or_default() += 1;
                }
                Ok(Effects::default())
            }
            Command::DropChanged(drop) => {
                self.drop_changed(*drop);
                Ok(Effects::default())
            }
            Command::Tick { viewers } => Ok(self.tick(viewers, now)),
        }
    }

    /// Checks a command that must be stored first and says what to store. The book does not
    /// change until [`StreamBook::commit`].
    pub fn plan(&self, command: DurableCommand, now: Timestamp) -> Result<Change, Rejection> {
        let stream = self.record.id.clone();
        match command {
            DurableCommand::Lifecycle(action) => {
                let status = transition(self.record.status, action)?;
                let (started_at, ended_at) = match status {
                    StreamStatus::Live => (Some(now), None),
                    _ => (self.record.started_at, Some(now)),
                };
                Ok(Change {
                    announce: Some(EventBody::Status {
                        status: status.as_str().to_owned(),
                    }),
                    write: Write::StreamStatus {
                        stream,
                        status,
                        started_at,
                        ended_at,
                    },
                })
            }
            DurableCommand::Pin(product) => {
                if self.record.status == StreamStatus::Ended {
                    return Err(Rejection::new(ErrorCode::InvalidState, "stream has ended"));
                }
                Ok(Change {
                    announce: Some(pinned_body(Some(&product))),
                    write: Write::Pinned { stream, product },
                })
            }
            DurableCommand::OpenDrop(drop) => {
                accepts_interaction(self.record.status)?;
                Ok(Change {
                    announce: Some(EventBody::DropOpened(event_data(&*drop)?)),
                    write: Write::NewDrop(drop),
                })
            }
            DurableCommand::DeleteChat { id, actor, stored } => {
                if !stored && self.rules.known(&id) != Known::Live {
                    return Err(Rejection::not_found("message"));
                }
                Ok(Change {
                    announce: Some(EventBody::ChatDeleted {
                        id: id.as_str().to_owned(),
                    }),
                    write: Write::DeleteChat {
                        entry: self.entry(
                            now,
                            actor,
                            ModerationAction::DeleteMessage,
                            id.as_str(),
                            None,
                        ),
                        stream,
                        message: id,
                    },
                })
            }
            DurableCommand::Mute {
                user,
                duration_seconds,
                actor,
                reason,
            } => {
                if user == self.record.seller {
                    return Err(Rejection::field(
                        "user",
                        "the stream's seller cannot be muted",
                    ));
                }
                if user == actor {
                    return Err(Rejection::field("user", "you cannot mute yourself"));
                }
                let entry = self.entry(now, actor, ModerationAction::Mute, user.as_str(), reason);
                Ok(Change {
                    announce: None,
                    write: Write::Mute {
                        mute: Mute {
                            stream,
                            user,
                            until: now.plus_millis(duration_seconds.saturating_mul(1_000)),
                        },
                        entry,
                    },
                })
            }
            DurableCommand::ChatSettings { patch, actor } => {
                let settings = patch.apply_to(self.rules.settings())?;
                let what = format!(
                    "slow_mode_seconds={}, blocked_words={}",
                    settings.slow_mode_seconds,
                    settings.blocked_words.len()
                );
                let entry = self.entry(
                    now,
                    actor,
                    ModerationAction::ChatSettings,
                    stream.as_str(),
                    Some(what),
                );
                Ok(Change {
                    announce: None,
                    write: Write::ChatSettings {
                        stream,
                        settings,
                        entry,
                    },
                })
            }
        }
    }

    fn entry(
        &self,
        at: Timestamp,
        actor: UserId,
        action: ModerationAction,
        target: &str,
        reason: Option<String>,
    ) -> ModerationEntry {
        ModerationEntry {
            stream: self.record.id.clone(),
            at,
            actor,
            action,
            target: target.to_owned(),
            reason,
        }
    }

    /// Applies a change whose write succeeded.
    pub fn commit(&mut self, change: Change) -> Effects {
        self.revision += 1;
        let mut effects = Effects::default();
        let mut ended = false;
        match change.write {
            Write::StreamStatus {
                status,
                started_at,
                ended_at,
                ..
            } => {
                self.record.status = status;
                self.record.started_at = started_at;
                self.record.ended_at = ended_at;
                ended = status == StreamStatus::Ended;
            }
            Write::Pinned { product, .. } => self.record.pinned = Some(product),
            Write::NewDrop(drop) => self.drops.push(*drop),
            Write::DeleteChat { message, .. } => {
                self.chat.retain(|m| m.id != message);
                self.rules.deleted(&message);
            }
            Write::Mute { mute, .. } => self.rules.mute(mute.user, mute.until),
            Write::ChatSettings { settings, .. } => self.rules.set_settings(settings),
        }
        if let Some(announce) = change.announce {
            effects.push(Effect::PublishOrdered(announce));
        }
        if ended && !self.drops.is_empty() {
            effects.push(Effect::CloseDrops(
                self.drops.iter().map(|d| d.id.clone()).collect(),
            ));
        }
        effects
    }

    fn chat(&mut self, chat: ChatCommand, now: Timestamp) -> Result<Effects, Rejection> {
        let ChatCommand {
            id,
            author,
            text,
            access,
            role,
        } = chat;
        if let ChatAccess::NotJoined(role) = access {
            let caller = Identity {
                user: author.id.clone(),
                name: author.name.clone(),
                role,
                tenant: Some(self.record.tenant.clone()),
            };
            let stream = StreamRef {
                tenant: &self.record.tenant,
                seller: &self.record.seller,
            };
            permit(&caller, Action::ChatWithoutJoin(stream))?;
        }
        accepts_interaction(self.record.status)?;
        let text = validate_chat_text(&text)?;
        self.rules.check(&author.id, role, &text, now)?;
        self.allowances.take(&author.id, now, &self.limits)?;
        self.rules.accepted(&author.id, &id, now);
        let message = ChatMessage {
            id,
            stream: self.record.id.clone(),
            tenant: self.record.tenant.clone(),
            user: author,
            text,
            at: now,
        };
        let data = event_data(&message)?;
        self.revision += 1;
        self.remember_chat(message.clone());
        Ok(Effects(vec![
            Effect::PublishOrdered(EventBody::Chat(data)),
            Effect::PersistChat(message),
        ]))
    }

    /// Keeps a message for the snapshot, forgetting the oldest beyond the limit.
    fn remember_chat(&mut self, message: ChatMessage) {
        let keep = self.limits.snapshot_chat;
        while self.chat.len() >= keep.max(1) {
            self.chat.pop_front();
        }
        if keep > 0 {
            self.chat.push_back(message);
        }
    }

    fn drop_changed(&mut self, drop: Drop) {
        self.revision += 1;
        self.drops.retain(|d| d.id != drop.id);
        if drop.status != DropStatus::Closed {
            self.drops.push(drop);
        }
    }

    fn tick(&mut self, viewers: u64, now: Timestamp) -> Effects {
        let mut effects = Effects::default();
        if !self.reactions.is_empty() {
            let counts = std::mem::take(&mut self.reactions);
            effects.push(Effect::PublishEphemeral(EventBody::Reactions { counts }));
        }
        let viewers_due = match self.viewers_sent {
            None => true,
            Some((sent, at)) => {
                let since = now.millis() - at.millis();
                viewers != sent && !(0..VIEWERS_EVERY_MS).contains(&since)
            }
        };
        if viewers_due {
            self.viewers_sent = Some((viewers, now));
            effects.push(Effect::PublishEphemeral(EventBody::Viewers {
                count: viewers,
            }));
        }
        self.allowances.forget_idle(now, &self.limits);
        self.rules.forget_lapsed(now);
        if self.record.status == StreamStatus::Ended && viewers == 0 {
            effects.push(Effect::Stop);
        }
        effects
    }
}

/// The `data` of an event about a record. Records serialize into JSON without fail (every key
/// is a string); should one ever not, the command is refused rather than sent empty.
fn event_data<T: Serialize>(record: &T) -> Result<Value, Rejection> {
    serde_json::to_value(record)
        .map_err(|_| Rejection::new(ErrorCode::Internal, "event could not be encoded"))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod moderation_tests;
