//! The storage boundary: what the engine needs from a database, one narrow trait per aggregate
//! ([`TenantStore`], [`CatalogStore`], [`StreamStore`], [`ChatStore`], [`DropStore`], plus
//! [`Health`]) and [`Storage`], all of them at once. Implemented by `liveshop-storage` for SQLite
//! and Postgres (and by in-memory fakes inside unit tests).
//!
//! Writes that the owner of a stream makes for it or its drops carry a [`Fence`], so that cluster
//! mode can have storage refuse a stale owner's writes ([`StorageError::Fenced`]).

mod error;
mod fence;
mod isolate;
mod stores;

pub use error::{StorageError, StorageResult};
pub use fence::Fence;
pub use isolate::{BatchOutcome, RowOutcome, write_isolating};
pub use stores::{
    CatalogStore, ChatStore, DropStore, Health, ModerationStore, NewClaim, Storage,
    StreamModeration, StreamStore, TenantStore,
};

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Compiles only if an `Arc<dyn Storage>` converts to each narrow store (trait upcasting), so
    /// the composition root can hand an actor only the store of its aggregate.
    fn narrows(storage: &Arc<dyn Storage>) {
        let _: Arc<dyn Health> = storage.clone();
        let _: Arc<dyn TenantStore> = storage.clone();
        let _: Arc<dyn CatalogStore> = storage.clone();
        let _: Arc<dyn StreamStore> = storage.clone();
        let _: Arc<dyn ChatStore> = storage.clone();
        let _: Arc<dyn DropStore> = storage.clone();
        let _: Arc<dyn ModerationStore> = storage.clone();
    }

    #[test]
    fn a_storage_handle_narrows_to_the_store_of_one_aggregate() {
        // The check is `narrows` compiling; this names it so the test list shows the guarantee.
        let _ = narrows as fn(&Arc<dyn Storage>);
    }
}
