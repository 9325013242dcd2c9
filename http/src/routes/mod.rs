//! REST routes of contract v1, section 3.

pub mod admin;
pub mod drops;
pub mod moderation;
pub mod ops;
pub mod products;
pub mod streams;
pub mod tenants;

use liveshop_engine::auth::{Action, Identity, StreamRef, permit};
use liveshop_engine::records::Stream;
use liveshop_engine::{Rejection, TenantId};

/// Checks that `caller` may do `action` ([`permit`], the one permission function) and answers
/// the tenant the caller acts in.
pub fn permitted_in<'a>(
    caller: &'a Identity,
    action: Action<'_>,
) -> Result<&'a TenantId, Rejection> {
    permit(caller, action)?;
    caller.member_tenant()
}

/// The parts of a stream that decide who may run it.
pub fn stream_ref(stream: &Stream) -> StreamRef<'_> {
    StreamRef {
        tenant: &stream.tenant,
        seller: &stream.seller,
    }
}

/// Checks a required display text field (trimmed, 1..=`max` characters) with the engine's one set
/// of text rules ([`liveshop_engine::text`]).
pub fn text_field(field: &str, value: &str, max: usize) -> Result<String, Rejection> {
    liveshop_engine::text::display(field, value, max)
}

/// A fresh unique id suffix.
pub fn fresh() -> String {
    liveshop_actors::clock::unique_suffix()
}
