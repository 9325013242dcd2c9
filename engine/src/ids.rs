//! Identifier newtypes, parsed once at the edge.
//!
//! Ids are opaque strings on the wire. Inside the engine each kind has its own type so a stream id can
//! never be passed where a tenant id is expected. They are backed by `Arc<str>`: actors clone them
//! into many messages and a clone must stay cheap.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::rejection::Rejection;

/// Longest id or user name the engine accepts, in characters (contract: `sub` is 1..=128 chars).
pub use crate::text::MAX_ID_CHARS;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Prefix of ids the engine generates for this kind, for readable logs.
            pub const PREFIX: &'static str = $prefix;

            /// Parses untrusted text into an id: 1..=128 characters under the rules of
            /// [`crate::text`] (no control or bidi characters, not only invisible ones).
            pub fn parse(text: &str) -> Result<Self, Rejection> {
                validate_id(text, $field).map(|()| Self(Arc::from(text)))
            }

            /// Wraps text that is already known to be a valid id (generated or loaded from storage).
            pub fn from_trusted(text: impl Into<Arc<str>>) -> Self {
                Self(text.into())
            }

            /// Builds a fresh id from a unique suffix (e.g. a UUIDv7 in simple form).
            pub fn generate(unique_suffix: &str) -> Self {
                Self(Arc::from(format!("{}{}", $prefix, unique_suffix)))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// An opaque string on the wire.
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                id_schema($prefix, $field)
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}
    };
}

/// The schema of an id: an opaque string of 1 to [`MAX_ID_CHARS`] characters.
#[cfg(feature = "openapi")]
fn id_schema(prefix: &str, field: &str) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let description = if field == "sub" {
        "A user id (the `sub` claim of the user's token): an opaque string".to_owned()
    } else {
        format!(
            "An opaque {field} id; ids the engine makes start with `{prefix}`, but do not parse them"
        )
    };
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_ID_CHARS))
        .description(Some(description))
        .into()
}

id_type!(
    /// A tenant (a shop on the platform).
    TenantId, "ten_", "tenant"
);
id_type!(
    /// A user, as named by the `sub` claim of their token.
    UserId, "usr_", "sub"
);
id_type!(
    /// A live stream (a show).
    StreamId, "str_", "stream"
);
id_type!(
    /// A product in a tenant's catalogue.
    ProductId, "prd_", "product"
);
id_type!(
    /// A limited drop of a product during a stream.
    DropId, "drp_", "drop"
);
id_type!(
    /// A buyer's claim on units of a drop.
    ClaimId, "clm_", "claim"
);
id_type!(
    /// One WebSocket connection.
    SessionId, "ses_", "session"
);
id_type!(
    /// A chat message.
    ChatId, "msg_", "chat"
);

fn validate_id(text: &str, field: &str) -> Result<(), Rejection> {
    crate::text::opaque(field, text, MAX_ID_CHARS)
}

/// A tenant's URL-safe short name: `[a-z0-9-]{2,40}`, unique across the platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Slug(String);

impl Slug {
    /// Parses untrusted text into a slug.
    pub fn parse(text: &str) -> Result<Self, Rejection> {
        let ok_len = (2..=40).contains(&text.len());
        let ok_chars = text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok_len && ok_chars {
            Ok(Self(text.to_owned()))
        } else {
            Err(Rejection::field(
                "slug",
                "must be 2 to 40 characters of a-z, 0-9 and -",
            ))
        }
    }

    /// Wraps a slug loaded from storage.
    pub fn from_trusted(text: String) -> Self {
        Self(text)
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A string of the slug's alphabet and length.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Slug {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[a-z0-9-]{2,40}$"))
            .description(Some(
                "A tenant's URL-safe short name, unique across the platform",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Slug {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_any_printable_text_up_to_128_chars() {
        assert!(UserId::parse("alice@example.com").is_ok());
        assert!(UserId::parse(&"é".repeat(128)).is_ok());
    }

    #[test]
    fn ids_refuse_empty_long_and_control_text() {
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(&"a".repeat(129)).is_err());
        assert!(StreamId::parse("a\nb").is_err());
        assert!(StreamId::parse("a\0b").is_err());
        assert!(UserId::parse("\u{202E}evil").is_err());
        assert!(UserId::parse("\u{200B}").is_err());
    }

    #[test]
    fn id_errors_name_the_field() {
        let err = StreamId::parse("").unwrap_err();
        assert!(err.message.starts_with("stream:"), "{}", err.message);
    }

    #[test]
    fn generated_ids_carry_their_kind_prefix() {
        assert_eq!(TenantId::generate("abc").as_str(), "ten_abc");
    }

    #[test]
    fn slugs_follow_the_contract_pattern() {
        assert!(Slug::parse("shop-42").is_ok());
        assert!(Slug::parse("a").is_err());
        assert!(Slug::parse("Shop").is_err());
        assert!(Slug::parse("shop_1").is_err());
        assert!(Slug::parse(&"a".repeat(41)).is_err());
    }
}
