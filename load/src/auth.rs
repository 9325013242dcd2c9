//! HS256 tokens minted from the server's shared secret (contract section 2), so a run can
//! act as operator, seller and many distinct viewers without any account setup.

use anyhow::Context as _;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// Claims of a Liveshop token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// `viewer`, `seller`, `moderator`, `admin` or `operator`.
    pub role: String,
    /// Tenant id; absent for operators.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tid: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
}

impl Claims {
    /// Claims for `sub` acting as `role` in tenant `tid`, valid for `ttl_secs` from now.
    pub fn new(sub: &str, role: &str, tid: Option<&str>, ttl_secs: u64) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self {
            sub: sub.to_string(),
            role: role.to_string(),
            tid: tid.map(str::to_string),
            exp: now + ttl_secs,
            name: Some(sub.to_string()),
        }
    }
}

/// Signs tokens with one secret.
#[derive(Clone)]
pub struct Minter {
    key: EncodingKey,
    ttl_secs: u64,
}

impl Minter {
    /// A minter for `secret` whose tokens live `ttl_secs`.
    pub fn new(secret: &str, ttl_secs: u64) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.as_bytes()),
            ttl_secs,
        }
    }

    /// Signs arbitrary claims.
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        encode(&Header::default(), claims, &self.key).context("signing token")
    }

    /// A token for `sub` as `role` in tenant `tid`.
    pub fn token(&self, sub: &str, role: &str, tid: Option<&str>) -> anyhow::Result<String> {
        self.sign(&Claims::new(sub, role, tid, self.ttl_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};

    const SECRET: &str = "0123456789abcdef0123456789abcdef0123";

    fn read(token: &str, secret: &str) -> jsonwebtoken::errors::Result<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        decode::<Claims>(
            token,
            &DecodingKey::from_secret(secret.as_bytes()),
            &validation,
        )
        .map(|d| d.claims)
    }

    #[test]
    fn tenant_token_round_trips() {
        let minter = Minter::new(SECRET, 3600);
        let token = minter.token("viewer-7", "viewer", Some("t1")).unwrap();
        assert_eq!(decode_header(&token).unwrap().alg, Algorithm::HS256);
        let claims = read(&token, SECRET).unwrap();
        assert_eq!(claims.sub, "viewer-7");
        assert_eq!(claims.role, "viewer");
        assert_eq!(claims.tid.as_deref(), Some("t1"));
        assert_eq!(claims.name.as_deref(), Some("viewer-7"));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(claims.exp > now + 3000 && claims.exp <= now + 3600);
    }

    #[test]
    fn operator_token_has_no_tenant() {
        let token = Minter::new(SECRET, 60)
            .token("ops", "operator", None)
            .unwrap();
        let raw: serde_json::Value = {
            let payload = token.split('.').nth(1).unwrap();
            let claims = read(&token, SECRET).unwrap();
            assert!(!payload.is_empty());
            serde_json::to_value(claims).unwrap()
        };
        assert!(raw.get("tid").is_none());
        assert_eq!(raw["role"], "operator");
    }

    #[test]
    fn wrong_secret_is_refused() {
        let token = Minter::new(SECRET, 60)
            .token("a", "seller", Some("t"))
            .unwrap();
        assert!(read(&token, "another-secret-another-secret-xx").is_err());
    }
}
