//! The user notifier: private frames (`claim_update`) to every connection of one user.
//!
//! Drop actors notify a buyer whose claim changed; the buyer's connections may be anywhere. One
//! node reaches its own connections ([`LocalNotifier`]); in cluster mode
//! (`liveshop_cluster::notifier`) a notifier also relays the frame to the other nodes, each of
//! which delivers it to its own connections.

use bytes::Bytes;
use dashmap::DashMap;
use liveshop_engine::{TenantId, UserId};

use crate::connection::Subscriber;

/// Delivers private frames to the connections of a user.
pub trait Notifier: Send + Sync + 'static {
    /// Registers a connection of `user` of `tenant`, so private frames reach it.
    fn register(&self, tenant: &TenantId, user: &UserId, conn: Subscriber);
    /// Forgets the connection with id `conn` registered for `user`.
    fn unregister(&self, tenant: &TenantId, user: &UserId, conn: u64);
    /// Sends a private frame (JSON) to every connection of `user`. Never waits.
    fn notify(&self, tenant: &TenantId, user: &UserId, frame: Bytes);
    /// Closes every connection of `user` to `tenant` with 1008 (a ban), on every node. Never
    /// waits.
    fn disconnect(&self, tenant: &TenantId, user: &UserId);
}

/// The connections of this node, per user.
#[derive(Default)]
pub struct LocalNotifier {
    users: DashMap<(TenantId, UserId), Vec<Subscriber>>,
}

impl LocalNotifier {
    /// A notifier with no connections.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Notifier for LocalNotifier {
    fn register(&self, tenant: &TenantId, user: &UserId, conn: Subscriber) {
        self.users
            .entry((tenant.clone(), user.clone()))
            .or_default()
            .push(conn);
    }

    fn unregister(&self, tenant: &TenantId, user: &UserId, conn: u64) {
        let key = (tenant.clone(), user.clone());
        if let Some(mut conns) = self.users.get_mut(&key) {
            conns.retain(|c| c.id() != conn);
        }
        self.users.remove_if(&key, |_, c| c.is_empty());
    }

    fn notify(&self, tenant: &TenantId, user: &UserId, frame: Bytes) {
        if let Some(conns) = self.users.get(&(tenant.clone(), user.clone())) {
            for conn in conns.iter() {
                conn.send_json(&frame);
            }
        }
    }

    fn disconnect(&self, tenant: &TenantId, user: &UserId) {
        // Taken out of the map first: closing must not run under the map's lock, and a closed
        // connection unregisters itself anyway.
        let conns = self
            .users
            .get(&(tenant.clone(), user.clone()))
            .map(|c| c.clone())
            .unwrap_or_default();
        for conn in conns {
            conn.close_banned();
        }
    }
}
