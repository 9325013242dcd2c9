//! REST routes of contract v1, section 3.

pub mod admin;
pub mod drops;
pub mod ops;
pub mod products;
pub mod streams;
pub mod tenants;

use liveshop_engine::Rejection;

/// Checks a required display text field (trimmed, 1..=`max` characters) with the engine's one set
/// of text rules ([`liveshop_engine::text`]).
pub fn text_field(field: &str, value: &str, max: usize) -> Result<String, Rejection> {
    liveshop_engine::text::display(field, value, max)
}

/// A fresh unique id suffix.
pub fn fresh() -> String {
    liveshop_actors::clock::unique_suffix()
}
