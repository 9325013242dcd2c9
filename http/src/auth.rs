//! HS256 tokens: minting (the `token` command, tests) and verification at the edge.
//!
//! Verification pins the algorithm to HS256 (so `none` and every other algorithm are refused),
//! requires `exp` and `sub`, and honours `nbf`, with no leeway: a token is valid while
//! `nbf <= now < exp` (seconds), so it is refused from the second equal to `exp` on. It resolves the tenant once per request or connection, never per
//! frame. Tokens never reach a log line.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use liveshop_engine::auth::{Identity, Role};
use liveshop_engine::{ErrorCode, Rejection, TenantId, UserId};
use serde::{Deserialize, Serialize};

/// The claims of a Liveshop token (contract v1, section 2).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Role name.
    pub role: String,
    /// Tenant id; absent for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    /// Expiry, seconds since the epoch: the token is valid while now is before it.
    pub exp: u64,
    /// Not before, seconds since the epoch: the token is refused until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A verified token: who, and until when.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The caller (tenant not yet checked to exist).
    pub identity: Identity,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

/// Signing and verification keys derived from the secret.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Keys {
    /// Keys for an HS256 secret.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Signs claims into a token.
    pub fn mint(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// Verifies a token and parses its claims into an identity. Any failure is `unauthorized`
    /// with a message that says what was wrong but never echoes the token.
    pub fn verify(&self, token: &str) -> Result<Verified, Rejection> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "token expired",
                    ErrorKind::ImmatureSignature => "token is not valid yet (nbf)",
                    ErrorKind::InvalidSignature => "token signature is invalid",
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        "token algorithm must be HS256"
                    }
                    ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
                    _ => "token is malformed",
                };
                unauthorized(why)
            })?;
        let claims = data.claims;
        // The library refuses only `exp < now`; the token's last valid second is `exp - 1`.
        if claims.exp <= unix_now() {
            return Err(unauthorized("token expired"));
        }
        let user = UserId::parse(&claims.sub).map_err(|_| unauthorized("sub claim is invalid"))?;
        let role = Role::parse(&claims.role).ok_or_else(|| unauthorized("unknown role"))?;
        let tenant = match (role, claims.tid.as_deref()) {
            (Role::Operator, _) => None,
            (_, Some(tid)) => {
                Some(TenantId::parse(tid).map_err(|_| unauthorized("tid claim is invalid"))?)
            }
            (_, None) => return Err(unauthorized("tid claim is required for tenant roles")),
        };
        let name = match claims.name {
            Some(n) => liveshop_engine::text::user_name(&n)
                .map_err(|e| unauthorized(&format!("name claim is invalid ({})", e.message)))?,
            None => claims.sub,
        };
        Ok(Verified {
            identity: Identity {
                user,
                name,
                role,
                tenant,
            },
            exp: claims.exp,
        })
    }
}

/// An `unauthorized` refusal.
pub fn unauthorized(why: &str) -> Rejection {
    Rejection::new(ErrorCode::Unauthorized, why)
}

/// Seconds since the epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Longest lifetime `claims_for` (and so `liveshop token --ttl`) gives a token: one year.
pub const MAX_TTL_SECS: u64 = 366 * 24 * 3600;

/// Claims for a token that lives `ttl_secs` from now (at most [`MAX_TTL_SECS`]).
pub fn claims_for(
    role: Role,
    tenant: Option<&str>,
    sub: &str,
    name: Option<&str>,
    ttl_secs: u64,
) -> Claims {
    Claims {
        sub: sub.to_owned(),
        role: role.as_str().to_owned(),
        tid: tenant.map(str::to_owned),
        exp: unix_now().saturating_add(ttl_secs.min(MAX_TTL_SECS)),
        nbf: None,
        name: name.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn a_minted_token_verifies_into_its_identity() {
        let k = keys();
        let t = k
            .mint(&claims_for(Role::Seller, Some("t1"), "u1", Some("Ann"), 60))
            .unwrap();
        let v = k.verify(&t).unwrap();
        assert_eq!(v.identity.user.as_str(), "u1");
        assert_eq!(v.identity.name, "Ann");
        assert_eq!(v.identity.role, Role::Seller);
        assert_eq!(v.identity.tenant.unwrap().as_str(), "t1");
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let other = Keys::new(b"another-secret-another-secret-xx");
        let t = other
            .mint(&claims_for(Role::Viewer, Some("t"), "u", None, 60))
            .unwrap();
        assert_eq!(keys().verify(&t).unwrap_err().code, ErrorCode::Unauthorized);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let k = keys();
        let mut c = claims_for(Role::Viewer, Some("t"), "u", None, 0);
        c.exp = unix_now() - 10;
        let err = k.verify(&k.mint(&c).unwrap()).unwrap_err();
        assert_eq!(err.message, "token expired");
    }

    #[test]
    fn a_token_is_refused_from_the_second_equal_to_exp() {
        let k = keys();
        let mut c = claims_for(Role::Viewer, Some("t"), "u", None, 0);
        // The clock only moves on: by the check, the second equal to `exp` has come.
        c.exp = unix_now();
        let err = k.verify(&k.mint(&c).unwrap()).unwrap_err();
        assert_eq!(err.message, "token expired");
        c.exp = unix_now() + 5;
        assert!(k.verify(&k.mint(&c).unwrap()).is_ok());
    }

    #[test]
    fn a_token_is_refused_before_its_nbf() {
        let k = keys();
        let mut c = claims_for(Role::Viewer, Some("t"), "u", None, 600);
        c.nbf = Some(unix_now() + 60);
        let err = k.verify(&k.mint(&c).unwrap()).unwrap_err();
        assert_eq!(err.message, "token is not valid yet (nbf)");
        c.nbf = Some(unix_now());
        assert!(k.verify(&k.mint(&c).unwrap()).is_ok());
    }

    #[test]
    fn claims_for_never_wraps_the_expiry() {
        let c = claims_for(Role::Viewer, Some("t"), "u", None, u64::MAX);
        assert!(c.exp > unix_now());
        assert!(c.exp <= unix_now() + MAX_TTL_SECS);
    }

    #[test]
    fn alg_none_is_refused() {
        use base64::Engine as _;
        let encode = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let header = encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = encode(
            format!(
                r#"{{"sub":"u","role":"admin","tid":"t","exp":{}}}"#,
                unix_now() + 60
            )
            .as_bytes(),
        );
        let token = format!("{header}.{payload}.");
        assert_eq!(
            keys().verify(&token).unwrap_err().code,
            ErrorCode::Unauthorized
        );
    }

    #[test]
    fn unknown_roles_and_missing_tenants_are_refused() {
        let k = keys();
        let mut c = claims_for(Role::Viewer, Some("t"), "u", None, 60);
        c.role = "root".into();
        assert!(k.verify(&k.mint(&c).unwrap()).is_err());
        let c = claims_for(Role::Viewer, None, "u", None, 60);
        assert!(k.verify(&k.mint(&c).unwrap()).is_err());
    }

    #[test]
    fn operators_need_no_tenant() {
        let k = keys();
        let t = k
            .mint(&claims_for(Role::Operator, None, "op", None, 60))
            .unwrap();
        assert!(k.verify(&t).unwrap().identity.tenant.is_none());
    }
}
