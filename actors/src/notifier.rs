//! Private frames for one user (a buyer's `claim_update`), wherever their connections are.

use bytes::Bytes;
use dashmap::DashMap;
use liveshop_engine::{TenantId, UserId};

use crate::broker::Subscriber;

/// Sends a private frame to every connection of a user. Single-node: [`LocalNotifier`]; cluster
/// mode adds the connections on other nodes.
pub trait Notifier: Send + Sync + 'static {
    /// Sends `frame` (JSON) to every connection of `user` in `tenant`.
    fn notify(&self, tenant: &TenantId, user: &UserId, frame: &Bytes);
}

/// The connections of each user on this node.
#[derive(Default)]
pub struct LocalNotifier {
    users: DashMap<(TenantId, UserId), Vec<Subscriber>>,
}

impl LocalNotifier {
    /// Registers a connection of `user`, so private frames reach it.
    pub fn register(&self, tenant: &TenantId, user: &UserId, conn: Subscriber) {
        self.users
            .entry((tenant.clone(), user.clone()))
            .or_default()
            .push(conn);
    }

    /// Forgets a connection registered with [`LocalNotifier::register`].
    pub fn unregister(&self, tenant: &TenantId, user: &UserId, conn: u64) {
        let key = (tenant.clone(), user.clone());
        if let Some(mut conns) = self.users.get_mut(&key) {
            conns.retain(|c| c.id() != conn);
        }
        self.users.remove_if(&key, |_, c| c.is_empty());
    }
}

impl Notifier for LocalNotifier {
    fn notify(&self, tenant: &TenantId, user: &UserId, frame: &Bytes) {
        if let Some(conns) = self.users.get(&(tenant.clone(), user.clone())) {
            for conn in conns.iter() {
                conn.send_json(frame);
            }
        }
    }
}
