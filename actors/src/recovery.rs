//! Recovery: the drops that must run without being asked are started from storage.
//!
//! A drop with holds must expire them on time and a drop with an end time must close on time,
//! whether or not anyone touches it. After a restart of the process (or a `kill -9`), nothing in
//! memory remembers them, so storage is asked at start, and again every [`EVERY`], for the drops
//! that are not closed; those whose actor does not run are started. A started drop reads its
//! claims, applies at once the expiries that passed while nothing ran, and closes at once if its
//! end time passed. The periodic pass also brings back a drop whose supervisor gave up restarting
//! it.

use std::time::Duration;

use liveshop_engine::storage::Storage;

use crate::directory::Directory;

/// How often storage is searched for drops that must run but do not.
pub const EVERY: Duration = Duration::from_secs(5);

/// Starts every drop that storage says is not closed and whose actor does not run; returns how
/// many were started. Failures are logged and left to the next pass.
pub async fn pass(directory: &Directory, store: &dyn Storage) -> usize {
    let drops = match store.drops_to_recover().await {
        Ok(drops) => drops,
        Err(err) => {
            tracing::warn!(error = %err, source = ?std::error::Error::source(&err),
                "could not list the drops to recover; will retry");
            return 0;
        }
    };
    let mut started = 0;
    for drop in drops {
        if directory.drop_is_running(&drop.id) {
            continue;
        }
        match directory.drop(&drop.tenant, &drop.id).await {
            Ok(_) => started += 1,
            Err(rejection) => {
                tracing::warn!(drop_id = %drop.id, error = %rejection, "could not restore a drop; will retry")
            }
        }
    }
    if started > 0 {
        tracing::info!(drops = started, "drops restored from storage");
    }
    started
}

/// Cluster mode: offers every live stream that does not run here to this node. Placement gives
/// it to this node when nobody holds it (its owner died or handed it over), and the stream's
/// actor then starts here, restored from storage; a stream another node runs stays there.
/// Returns how many streams were started here.
pub async fn offer_live_streams(directory: &Directory, store: &dyn Storage) -> usize {
    let streams = match store.live_streams().await {
        Ok(streams) => streams,
        Err(err) => {
            tracing::warn!(error = %err, source = ?std::error::Error::source(&err),
                "could not list the live streams; will retry");
            return 0;
        }
    };
    let mut started = 0;
    for stream in streams {
        if directory.stream_is_running(&stream.id) {
            continue;
        }
        match directory.stream(&stream.tenant, &stream.id).await {
            Ok(crate::directory::Located::Here(_)) => started += 1,
            Ok(crate::directory::Located::Elsewhere(_)) => {}
            Err(rejection) => {
                tracing::debug!(stream_id = %stream.id, error = %rejection, "could not place a live stream; will retry")
            }
        }
    }
    if started > 0 {
        tracing::info!(streams = started, "live streams taken over by this node");
    }
    started
}
