//! The one place the actor tree reads the wall clock and makes fresh ids.

use liveshop_engine::Timestamp;

/// Now, as engine time.
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}

/// A fresh, time-ordered unique suffix for generated ids (UUIDv7, simple form).
pub fn unique_suffix() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}
