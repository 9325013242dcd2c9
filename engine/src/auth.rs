//! Who is calling and what their role allows: the authorization rules, independent of how the
//! identity was proven (the HTTP crate verifies tokens).

use serde::{Deserialize, Serialize};

use crate::ids::{TenantId, UserId};
use crate::rejection::{ErrorCode, Rejection};

mod permit;

pub use permit::{Action, StreamRef, permit};

/// Roles of the contract: four tenant roles and platform staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Watches, chats, reacts, claims.
    Viewer,
    /// Runs their own streams, manages products and drops.
    Seller,
    /// Moderates chat of the tenant's streams.
    Moderator,
    /// Everything a seller can do, on every stream of the tenant.
    Admin,
    /// Platform staff: creates tenants, watches the actor tree; belongs to no tenant.
    Operator,
}

impl Role {
    /// Parses the `role` claim.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "viewer" => Some(Self::Viewer),
            "seller" => Some(Self::Seller),
            "moderator" => Some(Self::Moderator),
            "admin" => Some(Self::Admin),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }

    /// The claim spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Seller => "seller",
            Self::Moderator => "moderator",
            Self::Admin => "admin",
            Self::Operator => "operator",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `sub` claim.
    pub user: UserId,
    /// Display name (`name` claim, else `sub`).
    pub name: String,
    /// The role claim.
    pub role: Role,
    /// The tenant, for every role but operator.
    pub tenant: Option<TenantId>,
}

impl Identity {
    /// The caller's tenant, or `forbidden` for callers without one (operators).
    pub fn member_tenant(&self) -> Result<&TenantId, Rejection> {
        self.tenant
            .as_ref()
            .ok_or_else(|| Rejection::new(ErrorCode::Forbidden, "this action needs a tenant role"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: Role, tenant: Option<&str>, user: &str) -> Identity {
        Identity {
            user: UserId::from_trusted(user),
            name: user.to_owned(),
            role,
            tenant: tenant.map(TenantId::from_trusted),
        }
    }

    #[test]
    fn roles_parse_from_their_claim_spelling_only() {
        assert_eq!(Role::parse("seller"), Some(Role::Seller));
        assert_eq!(Role::parse("Seller"), None);
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn viewers_cannot_act_as_sellers() {
        let e = permit(&who(Role::Viewer, Some("t"), "u"), Action::CreateStream).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
    }

    #[test]
    fn operators_have_no_tenant_to_act_in() {
        let op = who(Role::Operator, None, "op");
        assert_eq!(op.member_tenant().unwrap_err().code, ErrorCode::Forbidden);
        assert_eq!(
            permit(&op, Action::CreateStream).unwrap_err().code,
            ErrorCode::Forbidden
        );
        assert!(permit(&op, Action::Operate).is_ok());
        assert!(permit(&op, Action::ReadTenant(&TenantId::from_trusted("any"))).is_ok());
    }

    fn run(caller: &Identity, tenant: &TenantId, seller: &UserId) -> Result<(), Rejection> {
        permit(caller, Action::RunStream(StreamRef { tenant, seller }))
    }

    #[test]
    fn a_stream_is_run_by_its_seller_or_an_admin() {
        let t = TenantId::from_trusted("t");
        let seller = UserId::from_trusted("s1");
        assert!(run(&who(Role::Seller, Some("t"), "s1"), &t, &seller).is_ok());
        assert!(run(&who(Role::Admin, Some("t"), "a"), &t, &seller).is_ok());
        let other = run(&who(Role::Seller, Some("t"), "s2"), &t, &seller);
        assert_eq!(other.unwrap_err().code, ErrorCode::Forbidden);
    }

    #[test]
    fn another_tenants_stream_is_not_found() {
        let t = TenantId::from_trusted("t");
        let e = run(
            &who(Role::Admin, Some("other"), "a"),
            &t,
            &UserId::from_trusted("s"),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
    }
}
