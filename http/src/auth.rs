//! HS256 tokens: minting (the `token` command, tests) and verification at the edge.
//!
//! Verification pins the algorithm to HS256 (so `none` and every other algorithm are refused),
//! requires `exp` and `sub`, and honours `nbf`, with no leeway: a token is valid while
//! `nbf <= now < exp` (seconds), so it is refused from the second equal to `exp` on. It resolves the tenant once per request or connection, never per
//! frame. Tokens never reach a log line.
//!
//! Several named keys may be valid at once, for rotation (`LIVESHOP_JWT_SECRETS`): the first
//! signs, a token's `kid` header selects the one key it is checked against, and a token without
//! `kid` is checked against each.

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

/// Why a key set cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeysError {
    /// A key set needs at least one key: the first signs.
    #[error("no key is given")]
    Empty,
    /// A `kid` must name one key only, or a token's `kid` would be ambiguous.
    #[error("kid {0:?} is given more than once")]
    DuplicateKid(String),
}

/// Why a token could not be signed with a named key.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// No key has this `kid` (or the keys have no kids at all: `LIVESHOP_JWT_SECRET`).
    #[error("no key has kid {0:?}")]
    UnknownKid(String),
    /// The signing itself failed.
    #[error(transparent)]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// One HS256 key, and the `kid` that names it (none for the single `LIVESHOP_JWT_SECRET`).
struct Key {
    kid: Option<String>,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Key {
    fn new(kid: Option<String>, secret: &[u8]) -> Self {
        Self {
            kid,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }
}

/// Signing and verification keys derived from the secret, or from several named secrets during a
/// key rotation (contract v1, section 10): the first key signs; a token with a `kid` header is
/// checked against that key only; a token without one against each key in order.
pub struct Keys {
    /// Never empty; the first signs.
    keys: Vec<Key>,
    /// Whether the keys have kids (`LIVESHOP_JWT_SECRETS`). A single unnamed key
    /// (`LIVESHOP_JWT_SECRET`) checks every token, whatever its `kid` says, as it always did.
    named: bool,
    validation: Validation,
}

impl Keys {
    /// Keys for one HS256 secret without a `kid` (`LIVESHOP_JWT_SECRET`).
    pub fn new(secret: &[u8]) -> Self {
        Self {
            keys: vec![Key::new(None, secret)],
            named: false,
            validation: validation(),
        }
    }

    /// Keys for several named HS256 secrets (`LIVESHOP_JWT_SECRETS`), in order: the first signs
    /// and puts its `kid` in the header. Each `kid` may appear once.
    pub fn named<'a>(
        secrets: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Self, KeysError> {
        let mut keys: Vec<Key> = Vec::new();
        for (kid, secret) in secrets {
            if keys.iter().any(|k| k.kid.as_deref() == Some(kid)) {
                return Err(KeysError::DuplicateKid(kid.to_owned()));
            }
            keys.push(Key::new(Some(kid.to_owned()), secret));
        }
        if keys.is_empty() {
            return Err(KeysError::Empty);
        }
        Ok(Self {
            keys,
            named: true,
            validation: validation(),
        })
    }

    /// The `kid` new tokens are signed with; none for a single `LIVESHOP_JWT_SECRET`.
    pub fn signing_kid(&self) -> Option<&str> {
        self.keys[0].kid.as_deref()
    }

    /// Every `kid` that verifies tokens, the signing one first (none for `LIVESHOP_JWT_SECRET`).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref())
    }

    /// Signs claims into a token with the signing (first) key, its `kid` in the header.
    pub fn mint(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        sign(&self.keys[0], claims)
    }

    /// Signs claims into a token with the key named `kid` (`liveshop token --kid`).
    pub fn mint_with(&self, kid: &str, claims: &Claims) -> Result<String, MintError> {
        let key = self
            .find(kid)
            .ok_or_else(|| MintError::UnknownKid(kid.to_owned()))?;
        Ok(sign(key, claims)?)
    }

    fn find(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// Checks the signature and the time claims, with the key the token's `kid` names, or with
    /// each key in turn when it names none. Costs one HMAC per tried key: one, except for a
    /// token without `kid` under several keys.
    fn decode(&self, token: &str) -> Result<Claims, Rejection> {
        let decode = |key: &Key| {
            jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)
                .map(|data| data.claims)
        };
        if !self.named {
            return decode(&self.keys[0]).map_err(refusal);
        }
        let header = jsonwebtoken::decode_header(token).map_err(refusal)?;
        if let Some(kid) = header.kid {
            let key = self
                .find(&kid)
                .ok_or_else(|| unauthorized("token kid is unknown"))?;
            return decode(key).map_err(refusal);
        }
        let mut last = None;
        for key in &self.keys {
            match decode(key) {
                Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
                    last = Some(e);
                }
                // The signature matched (or the token is refused before any key is tried): this
                // key's verdict is the token's.
                other => return other.map_err(refusal),
            }
        }
        Err(last.map_or_else(|| unauthorized("token signature is invalid"), refusal))
    }

    /// Verifies a token and parses its claims into an identity. Any failure is `unauthorized`
    /// with a message that says what was wrong but never echoes the token.
    pub fn verify(&self, token: &str) -> Result<Verified, Rejection> {
        let claims = self.decode(token)?;
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

fn validation() -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    validation.leeway = 0;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation
}

fn sign(key: &Key, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    let mut header = Header::new(Algorithm::HS256);
    header.kid.clone_from(&key.kid);
    jsonwebtoken::encode(&header, claims, &key.encoding)
}

/// The `unauthorized` refusal for a token the library refused: what was wrong, in plain words.
fn refusal(e: jsonwebtoken::errors::Error) -> Rejection {
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

    const OLD: &[u8] = b"old-secret-0123456789-abcdefghijklmn";
    const NEW: &[u8] = b"new-secret-9876543210-zyxwvutsrqpon";

    fn rotating() -> Keys {
        Keys::named([("new", NEW), ("old", OLD)]).unwrap()
    }

    fn kid_of(token: &str) -> Option<String> {
        jsonwebtoken::decode_header(token).unwrap().kid
    }

    fn viewer() -> Claims {
        claims_for(Role::Viewer, Some("t"), "u", None, 60)
    }

    #[test]
    fn the_first_named_key_signs_with_its_kid_and_a_named_one_on_request() {
        let k = rotating();
        assert_eq!(k.signing_kid(), Some("new"));
        assert_eq!(k.kids().collect::<Vec<_>>(), ["new", "old"]);
        let t = k.mint(&viewer()).unwrap();
        assert_eq!(kid_of(&t).as_deref(), Some("new"));
        assert!(k.verify(&t).is_ok());
        let t = k.mint_with("old", &viewer()).unwrap();
        assert_eq!(kid_of(&t).as_deref(), Some("old"));
        assert!(k.verify(&t).is_ok());
        assert!(matches!(
            k.mint_with("older", &viewer()),
            Err(MintError::UnknownKid(kid)) if kid == "older"
        ));
        // A single secret has no kids: it signs without one, and names none.
        let single = keys();
        assert_eq!(kid_of(&single.mint(&viewer()).unwrap()), None);
        assert!(single.mint_with("any", &viewer()).is_err());
    }

    #[test]
    fn a_token_without_kid_is_checked_against_each_key() {
        let k = rotating();
        for secret in [NEW, OLD] {
            let t = Keys::new(secret).mint(&viewer()).unwrap();
            assert_eq!(kid_of(&t), None);
            assert!(k.verify(&t).is_ok());
        }
        let foreign = Keys::new(b"foreign-secret-0123456789-abcdefgh");
        let err = k.verify(&foreign.mint(&viewer()).unwrap()).unwrap_err();
        assert_eq!(err.message, "token signature is invalid");
    }

    #[test]
    fn a_kid_selects_its_key_only_and_an_unknown_kid_is_refused() {
        let k = rotating();
        // Signed with the old secret but naming the new key: not tried against the old one.
        let liar = Keys::named([("new", OLD)]).unwrap();
        let err = k.verify(&liar.mint(&viewer()).unwrap()).unwrap_err();
        assert_eq!(err.message, "token signature is invalid");
        let stranger = Keys::named([("gone", OLD)]).unwrap();
        let err = k.verify(&stranger.mint(&viewer()).unwrap()).unwrap_err();
        assert_eq!(err.code, ErrorCode::Unauthorized);
        assert_eq!(err.message, "token kid is unknown");
    }

    #[test]
    fn the_key_whose_signature_matches_gives_the_verdict() {
        // An expired token of the second key says so, not "signature is invalid" from the first.
        let mut c = viewer();
        c.exp = unix_now() - 10;
        let t = Keys::new(OLD).mint(&c).unwrap();
        assert_eq!(rotating().verify(&t).unwrap_err().message, "token expired");
    }

    #[test]
    fn a_single_secret_ignores_the_kid_header_as_before() {
        let named = Keys::named([("k1", b"0123456789abcdef0123456789abcdef".as_slice())]).unwrap();
        let t = named.mint(&viewer()).unwrap();
        assert_eq!(kid_of(&t).as_deref(), Some("k1"));
        assert!(keys().verify(&t).is_ok());
    }

    #[test]
    fn a_named_set_refuses_no_keys_and_a_duplicate_kid() {
        assert_eq!(
            Keys::named(std::iter::empty()).err(),
            Some(KeysError::Empty)
        );
        assert_eq!(
            Keys::named([("a", OLD), ("b", NEW), ("a", NEW)]).err(),
            Some(KeysError::DuplicateKid("a".into()))
        );
    }
}
