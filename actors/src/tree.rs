//! The live actor tree as operators see it: kind, id, parent, mailbox depth, restarts, uptime.

use std::time::Instant;

use dashmap::DashMap;
use serde_json::{Value, json};

use crate::mailbox::Depth;

/// One live actor.
#[derive(Debug, Clone)]
pub struct ActorInfo {
    /// Its parent's id (`kind:id`), if supervised by one of the listed actors.
    pub parent: Option<String>,
    /// Its mailbox.
    pub depth: Depth,
    /// When the current incarnation started.
    pub started: Instant,
    /// How often its supervisor restarted it.
    pub restarts: u64,
}

/// Registry of live actors, keyed by kind and id.
#[derive(Debug, Default)]
pub struct ActorTree {
    entries: DashMap<(&'static str, String), ActorInfo>,
}

impl ActorTree {
    /// Records an actor that just started, keeping the restart count of earlier incarnations.
    pub fn register(&self, kind: &'static str, id: &str, parent: Option<String>, depth: Depth) {
        let mut entry = self
            .entries
            .entry((kind, id.to_owned()))
            .or_insert_with(|| ActorInfo {
                parent: parent.clone(),
                depth: depth.clone(),
                started: Instant::now(),
                restarts: 0,
            });
        entry.parent = parent;
        entry.depth = depth;
        entry.started = Instant::now();
    }

    /// Counts a restart of the actor (before its new incarnation registers).
    pub fn note_restart(&self, kind: &'static str, id: &str) {
        if let Some(mut e) = self.entries.get_mut(&(kind, id.to_owned())) {
            e.restarts += 1;
        }
    }

    /// Forgets an actor that stopped for good.
    pub fn remove(&self, kind: &'static str, id: &str) {
        self.entries.remove(&(kind, id.to_owned()));
    }

    /// How many actors are listed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no actor is listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tree as JSON rows, sorted by kind and id.
    pub fn snapshot(&self) -> Vec<Value> {
        let mut rows: Vec<_> = self
            .entries
            .iter()
            .map(|e| {
                let ((kind, id), info) = (e.key(), e.value());
                (
                    (*kind, id.clone()),
                    json!({
                        "kind": kind,
                        "id": id,
                        "parent": info.parent,
                        "mailbox_depth": info.depth.current(),
                        "restarts": info.restarts,
                        "uptime_seconds": info.started.elapsed().as_secs_f64(),
                    }),
                )
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows.into_iter().map(|(_, v)| v).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::kind;

    #[test]
    fn restarts_survive_re_registration_and_removal_forgets() {
        let tree = ActorTree::default();
        tree.register(
            kind::STREAM,
            "s1",
            Some("tenant:t".into()),
            Depth::new(kind::STREAM),
        );
        tree.note_restart(kind::STREAM, "s1");
        tree.register(
            kind::STREAM,
            "s1",
            Some("tenant:t".into()),
            Depth::new(kind::STREAM),
        );
        let rows = tree.snapshot();
        assert_eq!(rows[0]["restarts"], 1);
        assert_eq!(rows[0]["parent"], "tenant:t");
        tree.remove(kind::STREAM, "s1");
        assert!(tree.is_empty());
    }
}
