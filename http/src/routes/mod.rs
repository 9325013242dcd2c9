//! REST routes of contract v1, section 3.

pub mod admin;
pub mod drops;
pub mod ops;
pub mod products;
pub mod streams;
pub mod tenants;

use liveshop_engine::Rejection;

/// Checks a required text field: trimmed, 1..=`max` characters.
pub fn text_field(field: &str, value: &str, max: usize) -> Result<String, Rejection> {
    let trimmed = value.trim();
    let n = trimmed.chars().count();
    if n == 0 {
        return Err(Rejection::field(field, "must not be empty"));
    }
    if n > max {
        return Err(Rejection::field(
            field,
            &format!("must be at most {max} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(Rejection::field(
            field,
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// A fresh unique id suffix.
pub fn fresh() -> String {
    liveshop_actors::clock::unique_suffix()
}
