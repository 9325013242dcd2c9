//! Wall-clock instants as plain numbers, formatted as RFC 3339 UTC on the wire.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the Unix epoch, UTC.
///
/// The engine never reads the clock itself: callers pass `now` in, which keeps every rule testable.
/// Storage keeps the raw number (portable across SQLite and Postgres); JSON carries RFC 3339 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Earliest instant the wire format can carry: `0000-01-01T00:00:00.000Z`.
    pub const EARLIEST: Self = Self(-62_167_219_200_000);
    /// Latest instant the wire format can carry: `9999-12-31T23:59:59.999Z`. RFC 3339 has four
    /// digit years, so anything later could be stored but never written back out.
    pub const LATEST: Self = Self(253_402_300_799_999);

    /// Builds a timestamp from milliseconds since the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// This instant moved forward by `ms` milliseconds (saturating).
    pub const fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// RFC 3339 text with millisecond precision, e.g. `2026-11-27T13:00:00.123Z`.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(dt) => {
                let (y, mo, d) = (dt.year(), u8::from(dt.month()), dt.day());
                format!(
                    "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
                    dt.hour(),
                    dt.minute(),
                    dt.second(),
                    dt.millisecond()
                )
            }
            Err(_) => "1970-01-01T00:00:00.000Z".to_owned(),
        }
    }

    /// Parses RFC 3339 text (any offset) into a UTC timestamp, refusing instants outside years
    /// 0000 to 9999 in UTC (an offset can move `9999-12-31T23:30:00-01:00` past them), which could
    /// not be formatted back.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let dt = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        let ms = dt.unix_timestamp_nanos().div_euclid(1_000_000);
        let t = i64::try_from(ms).ok().map(Self)?;
        (Self::EARLIEST..=Self::LATEST).contains(&t).then_some(t)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 timestamp"))
    }
}

/// On the wire a timestamp is RFC 3339 text, never the number it is inside.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some(
                "RFC 3339 in UTC with milliseconds; inputs may use any offset within the years 0000 to 9999 UTC",
            ))
            .examples(["2026-11-27T13:42:15.672Z"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_rfc3339_utc_with_milliseconds() {
        assert_eq!(
            Timestamp(1_795_770_000_123).to_rfc3339(),
            "2026-11-27T09:00:00.123Z"
        );
    }

    #[test]
    fn parses_what_it_formats() {
        let t = Timestamp(1_795_770_000_123);
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
    }

    #[test]
    fn parses_other_offsets_into_utc() {
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-27T10:00:00+01:00"),
            Some(Timestamp(1_795_770_000_000))
        );
    }

    #[test]
    fn the_wire_range_is_years_0000_to_9999_utc() {
        assert_eq!(Timestamp::EARLIEST.to_rfc3339(), "0000-01-01T00:00:00.000Z");
        assert_eq!(Timestamp::LATEST.to_rfc3339(), "9999-12-31T23:59:59.999Z");
        assert_eq!(
            Timestamp::parse_rfc3339("9999-12-31T23:59:59.999Z"),
            Some(Timestamp::LATEST)
        );
        assert_eq!(
            Timestamp::parse_rfc3339("0000-01-01T00:00:00Z"),
            Some(Timestamp::EARLIEST)
        );
    }

    #[test]
    fn refuses_instants_that_an_offset_moves_out_of_the_four_digit_years() {
        assert_eq!(Timestamp::parse_rfc3339("9999-12-31T23:30:00-01:00"), None);
        assert_eq!(Timestamp::parse_rfc3339("0000-01-01T00:30:00+01:00"), None);
    }

    #[test]
    fn refuses_text_that_is_not_a_timestamp() {
        assert_eq!(Timestamp::parse_rfc3339("tomorrow"), None);
    }
}
