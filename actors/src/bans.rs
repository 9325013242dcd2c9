//! The tenant bans this node enforces, in memory: every REST call and WebSocket upgrade asks
//! [`BanList::holds`] (a map lookup, no storage read), and a banned user's connections are closed
//! through the notifier, on every node.
//!
//! Three sources keep it current: a ban or unban made on this node (at once), and [`refresh`]
//! from storage every [`REFRESH_EVERY`], which teaches a node the bans made on other nodes (their
//! connections were closed at once by the notifier's relay; the refresh closes any that slipped
//! in meanwhile, and those of a node that missed the relay while Redis was down) and forgets
//! lapsed and lifted ones. Bans survive restarts because storage has them: a node loads them
//! before it serves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use liveshop_engine::moderation::Ban;
use liveshop_engine::storage::ModerationStore;
use liveshop_engine::{TenantId, Timestamp, UserId};

use crate::clock::Clock;
use crate::fanout::notifier::Notifier;

/// How often storage is read for bans made or lifted elsewhere.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// One enforced ban: when it lapses, and when this list learned it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    until: Option<Timestamp>,
    /// The [`BanList::generation`] when it was written.
    learned: u64,
}

/// The bans in force, by tenant and user.
#[derive(Default)]
pub struct BanList {
    bans: DashMap<(TenantId, UserId), Entry>,
    generation: AtomicU64,
}

impl BanList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// When `user`'s ban from `tenant` lapses (`Some(None)`: never), if one holds at `now`.
    pub fn holds(
        &self,
        tenant: &TenantId,
        user: &UserId,
        now: Timestamp,
    ) -> Option<Option<Timestamp>> {
        let entry = *self.bans.get(&(tenant.clone(), user.clone()))?;
        entry
            .until
            .is_none_or(|until| now < until)
            .then_some(entry.until)
    }

    /// Enforces `ban` from now on.
    pub fn insert(&self, ban: &Ban) {
        let learned = self.generation.load(Ordering::SeqCst);
        self.bans.insert(
            (ban.tenant.clone(), ban.user.clone()),
            Entry {
                until: ban.until,
                learned,
            },
        );
    }

    /// Stops enforcing a ban.
    pub fn remove(&self, tenant: &TenantId, user: &UserId) {
        self.bans.remove(&(tenant.clone(), user.clone()));
    }

    /// Bans enforced now.
    pub fn len(&self) -> usize {
        self.bans.len()
    }

    /// Whether no ban is enforced.
    pub fn is_empty(&self) -> bool {
        self.bans.is_empty()
    }

    /// Starts a refresh: what is learned from now on is newer than the storage read that
    /// follows, and survives [`BanList::refreshed`].
    fn begin_refresh(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::SeqCst)
    }

    /// Replaces the list with `active` (every ban that holds, read after
    /// [`BanList::begin_refresh`] returned `started`), keeping what was learned since; returns
    /// the bans it did not enforce before.
    fn refreshed(&self, started: u64, active: Vec<Ban>) -> Vec<Ban> {
        let mut new = Vec::new();
        let mut listed = std::collections::HashSet::with_capacity(active.len());
        for ban in active {
            let key = (ban.tenant.clone(), ban.user.clone());
            listed.insert(key.clone());
            if !self.bans.contains_key(&key) {
                new.push(ban.clone());
            }
            self.bans.insert(
                key,
                Entry {
                    until: ban.until,
                    learned: started,
                },
            );
        }
        self.bans
            .retain(|key, entry| listed.contains(key) || entry.learned > started);
        new
    }
}

/// Loads the bans that hold now into `list`, closing the connections of banned users this node
/// did not know of; returns how many bans hold.
pub async fn refresh(
    store: &dyn ModerationStore,
    list: &BanList,
    notifier: &dyn Notifier,
    clock: &dyn Clock,
) -> Result<usize, liveshop_engine::storage::StorageError> {
    let started = list.begin_refresh();
    let active = store.active_bans(clock.now()).await?;
    let count = active.len();
    for ban in list.refreshed(started, active) {
        notifier.disconnect(&ban.tenant, &ban.user);
    }
    Ok(count)
}

/// Runs [`refresh`] every [`REFRESH_EVERY`] until the task is aborted; a failed read keeps the
/// list as it is and is logged.
pub async fn keep_fresh(
    store: Arc<dyn ModerationStore>,
    list: Arc<BanList>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
) {
    let mut every = tokio::time::interval(REFRESH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(error) = refresh(&*store, &list, &*notifier, &*clock).await {
            tracing::warn!(%error, "bans not refreshed from storage; keeping the last list");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(user: &str, until: Option<i64>) -> Ban {
        Ban {
            tenant: TenantId::from_trusted("ten_1"),
            user: UserId::from_trusted(user),
            until: until.map(Timestamp::from_millis),
            reason: None,
            by: UserId::from_trusted("mod"),
            at: Timestamp::from_millis(0),
        }
    }

    fn holds(list: &BanList, user: &str, now: i64) -> bool {
        list.holds(
            &TenantId::from_trusted("ten_1"),
            &UserId::from_trusted(user),
            Timestamp::from_millis(now),
        )
        .is_some()
    }

    #[test]
    fn a_ban_holds_until_it_lapses_and_a_permanent_one_always() {
        let list = BanList::new();
        list.insert(&ban("u1", Some(1_000)));
        list.insert(&ban("u2", None));
        assert!(holds(&list, "u1", 999));
        assert!(!holds(&list, "u1", 1_000));
        assert!(holds(&list, "u2", i64::MAX / 2));
        assert!(!holds(&list, "u3", 0));
        assert!(
            list.holds(
                &TenantId::from_trusted("ten_2"),
                &UserId::from_trusted("u2"),
                Timestamp::from_millis(0)
            )
            .is_none(),
            "a ban is of one tenant"
        );
    }

    #[test]
    fn a_refresh_adds_what_storage_has_and_forgets_what_it_no_longer_has() {
        let list = BanList::new();
        list.insert(&ban("lifted_elsewhere", None));
        let started = list.begin_refresh();
        let new = list.refreshed(started, vec![ban("from_elsewhere", None)]);
        assert_eq!(new.len(), 1);
        assert!(holds(&list, "from_elsewhere", 0));
        assert!(!holds(&list, "lifted_elsewhere", 0));
    }

    #[test]
    fn a_ban_made_during_a_refresh_survives_a_storage_read_that_missed_it() {
        let list = BanList::new();
        let started = list.begin_refresh();
        // Banned here after the read began; the read does not have it yet.
        list.insert(&ban("just_now", None));
        let new = list.refreshed(started, vec![]);
        assert!(new.is_empty());
        assert!(holds(&list, "just_now", 0));
        // The next refresh, whose read has it, keeps it.
        let started = list.begin_refresh();
        list.refreshed(started, vec![ban("just_now", None)]);
        assert!(holds(&list, "just_now", 0));
    }
}
