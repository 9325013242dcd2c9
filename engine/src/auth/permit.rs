//! The one place that says who may do what: every check of a caller's role and tenant, made by the
//! HTTP routes, the sessions and the stream actor, is an [`Action`] answered by [`permit`].
//!
//! Whether a connection has joined a stream is the session's state, not the caller's identity, so
//! it comes in with the action ([`Action::Chat`], [`Action::React`]).

use super::{Identity, Role};
use crate::ids::{TenantId, UserId};
use crate::rejection::{ErrorCode, Rejection};

/// The stream an action is about: its tenant and the seller who created (and runs) it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRef<'a> {
    /// Owning tenant.
    pub tenant: &'a TenantId,
    /// The stream's seller.
    pub seller: &'a UserId,
}

/// Everything a caller may ask that depends on who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// `POST /v1/tenants`: platform staff only.
    CreateTenant,
    /// Operator endpoints: fault injection and the actor tree.
    Operate,
    /// Marking a reservation paid (operator; payments will call the same path).
    PayClaim,
    /// Reading a tenant: its members and operators; anyone else gets `not_found`.
    ReadTenant(&'a TenantId),
    /// Reading a stream of this tenant: its members and operators; else `not_found`.
    ReadStream(&'a TenantId),
    /// Reading a drop of this tenant: its members and operators; else `not_found`.
    ReadDrop(&'a TenantId),
    /// Listing the own tenant's products.
    ListProducts,
    /// Listing the own tenant's streams.
    ListStreams,
    /// Listing the caller's own claims.
    ListOwnClaims,
    /// Joining a stream of the own tenant over WebSocket.
    JoinStream,
    /// Chatting in a stream. A connection that has not joined may still publish when the caller
    /// can broadcast (seller or admin); the stream then checks [`Action::ChatWithoutJoin`].
    Chat {
        /// Whether the connection joined the stream.
        joined: bool,
    },
    /// Reacting in a stream; only after joining it.
    React {
        /// Whether the connection joined the stream.
        joined: bool,
    },
    /// Claiming units of a drop of the own tenant.
    Claim,
    /// Adding a product to the own tenant's catalogue.
    CreateProduct,
    /// Creating a stream in the own tenant.
    CreateStream,
    /// Any act of running a stream: its seller or an admin of its tenant.
    RunStream(StreamRef<'a>),
    /// Going live.
    StartStream(StreamRef<'a>),
    /// Ending the show.
    EndStream(StreamRef<'a>),
    /// Pinning a product.
    PinProduct(StreamRef<'a>),
    /// Opening a drop in the stream.
    OpenDrop(StreamRef<'a>),
    /// Closing a drop of the stream (the stream it was opened in is the one named).
    CloseDrop(StreamRef<'a>),
    /// Moderating a stream's chat (delete a message, mute, chat settings, read the log): its
    /// seller, and the tenant's admins and moderators.
    Moderate(StreamRef<'a>),
    /// Banning a user from this tenant: its admins and moderators, and its sellers (for the
    /// viewers of their own streams, which the caller checks).
    Ban(&'a TenantId),
    /// Chatting in this stream without having joined it: only its broadcaster (the stream's
    /// seller, or an admin) may; anyone else must join first.
    ChatWithoutJoin(StreamRef<'a>),
}

/// Answers whether `identity` may do `action`, with the refusal the contract gives otherwise:
/// `forbidden` for a role or tenant that does not allow it, `not_found` for another tenant's
/// records (so their ids stay hidden), `not_joined` for stream operations before `join`.
pub fn permit(identity: &Identity, action: Action<'_>) -> Result<(), Rejection> {
    match action {
        Action::CreateTenant | Action::Operate | Action::PayClaim => operator(identity),
        Action::ReadTenant(tenant) => reader(identity, tenant, "tenant"),
        Action::ReadStream(tenant) => reader(identity, tenant, "stream"),
        Action::ReadDrop(tenant) => reader(identity, tenant, "drop"),
        Action::ListProducts
        | Action::ListStreams
        | Action::ListOwnClaims
        | Action::JoinStream
        | Action::Claim => member(identity),
        Action::Chat { joined: true } => member(identity),
        Action::Chat { joined: false } => match identity.role {
            Role::Seller | Role::Admin => member(identity),
            _ => Err(Rejection::not_joined()),
        },
        Action::React { joined } => {
            if joined {
                member(identity)
            } else {
                Err(Rejection::not_joined())
            }
        }
        Action::CreateProduct | Action::CreateStream => seller(identity),
        Action::RunStream(stream)
        | Action::StartStream(stream)
        | Action::EndStream(stream)
        | Action::PinProduct(stream)
        | Action::OpenDrop(stream)
        | Action::CloseDrop(stream) => broadcaster(identity, stream),
        Action::Moderate(stream) => moderator(identity, stream),
        Action::Ban(tenant) => {
            if identity.tenant.as_ref() != Some(tenant) {
                return Err(Rejection::not_found("tenant"));
            }
            match identity.role {
                Role::Admin | Role::Moderator | Role::Seller => Ok(()),
                _ => Err(Rejection::new(
                    ErrorCode::Forbidden,
                    "only the tenant's admins, moderators and sellers may ban",
                )),
            }
        }
        Action::ChatWithoutJoin(stream) => {
            broadcaster(identity, stream).map_err(|_| Rejection::not_joined())
        }
    }
}

fn operator(identity: &Identity) -> Result<(), Rejection> {
    if identity.role == Role::Operator {
        Ok(())
    } else {
        Err(Rejection::new(
            ErrorCode::Forbidden,
            "operator role required",
        ))
    }
}

fn member(identity: &Identity) -> Result<(), Rejection> {
    identity.member_tenant().map(|_| ())
}

fn seller(identity: &Identity) -> Result<(), Rejection> {
    match identity.role {
        Role::Seller | Role::Admin => member(identity),
        _ => Err(Rejection::new(
            ErrorCode::Forbidden,
            "seller or admin role required",
        )),
    }
}

fn reader(identity: &Identity, tenant: &TenantId, what: &str) -> Result<(), Rejection> {
    if identity.role == Role::Operator || identity.tenant.as_ref() == Some(tenant) {
        Ok(())
    } else {
        Err(Rejection::not_found(what))
    }
}

fn moderator(identity: &Identity, stream: StreamRef<'_>) -> Result<(), Rejection> {
    if identity.tenant.as_ref() != Some(stream.tenant) {
        return Err(Rejection::not_found("stream"));
    }
    match identity.role {
        Role::Admin | Role::Moderator => Ok(()),
        Role::Seller if &identity.user == stream.seller => Ok(()),
        _ => Err(Rejection::new(
            ErrorCode::Forbidden,
            "only the stream's seller, or the tenant's admins and moderators, may moderate",
        )),
    }
}

fn broadcaster(identity: &Identity, stream: StreamRef<'_>) -> Result<(), Rejection> {
    if identity.tenant.as_ref() != Some(stream.tenant) {
        return Err(Rejection::not_found("stream"));
    }
    match identity.role {
        Role::Admin => Ok(()),
        Role::Seller if &identity.user == stream.seller => Ok(()),
        _ => Err(Rejection::new(
            ErrorCode::Forbidden,
            "only the stream's seller or an admin may do this",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The callers of the table, in its column order.
    fn callers() -> [Identity; 8] {
        let who = |role, tenant: Option<&str>, user: &str| Identity {
            user: UserId::from_trusted(user),
            name: user.to_owned(),
            role,
            tenant: tenant.map(TenantId::from_trusted),
        };
        [
            who(Role::Viewer, Some("t"), "v"),
            who(Role::Moderator, Some("t"), "m"),
            who(Role::Seller, Some("t"), "s1"),
            who(Role::Seller, Some("t"), "s2"),
            who(Role::Admin, Some("t"), "a"),
            who(Role::Admin, Some("other"), "a2"),
            who(Role::Seller, Some("other"), "s1"),
            who(Role::Operator, None, "op"),
        ]
    }

    /// `y` allowed, `F` forbidden, `N` not found, `J` not joined; one letter per caller of
    /// [`callers`]: viewer, moderator, the stream's seller, another seller, admin, another
    /// tenant's admin, the seller's id in another tenant, operator.
    fn expect(letter: char) -> Option<ErrorCode> {
        match letter {
            'y' => None,
            'F' => Some(ErrorCode::Forbidden),
            'N' => Some(ErrorCode::NotFound),
            'J' => Some(ErrorCode::NotJoined),
            other => panic!("unknown letter {other}"),
        }
    }

    #[test]
    fn each_role_may_do_exactly_what_the_contract_allows() {
        let t = TenantId::from_trusted("t");
        let s1 = UserId::from_trusted("s1");
        let stream = StreamRef {
            tenant: &t,
            seller: &s1,
        };
        let table: Vec<(Action<'_>, &str)> = vec![
            (Action::CreateTenant, "FFFFFFFy"),
            (Action::Operate, "FFFFFFFy"),
            (Action::PayClaim, "FFFFFFFy"),
            (Action::ReadTenant(&t), "yyyyyNNy"),
            (Action::ReadStream(&t), "yyyyyNNy"),
            (Action::ReadDrop(&t), "yyyyyNNy"),
            (Action::ListProducts, "yyyyyyyF"),
            (Action::ListStreams, "yyyyyyyF"),
            (Action::ListOwnClaims, "yyyyyyyF"),
            (Action::JoinStream, "yyyyyyyF"),
            (Action::Claim, "yyyyyyyF"),
            (Action::Chat { joined: true }, "yyyyyyyF"),
            (Action::Chat { joined: false }, "JJyyyyyJ"),
            (Action::React { joined: true }, "yyyyyyyF"),
            (Action::React { joined: false }, "JJJJJJJJ"),
            (Action::CreateProduct, "FFyyyyyF"),
            (Action::CreateStream, "FFyyyyyF"),
            (Action::RunStream(stream), "FFyFyNNN"),
            (Action::StartStream(stream), "FFyFyNNN"),
            (Action::EndStream(stream), "FFyFyNNN"),
            (Action::PinProduct(stream), "FFyFyNNN"),
            (Action::OpenDrop(stream), "FFyFyNNN"),
            (Action::CloseDrop(stream), "FFyFyNNN"),
            (Action::ChatWithoutJoin(stream), "JJyJyJJJ"),
            (Action::Moderate(stream), "FyyFyNNN"),
            (Action::Ban(&t), "FyyyyNNN"),
        ];
        for (action, row) in table {
            for (caller, letter) in callers().iter().zip(row.chars()) {
                let got = permit(caller, action).err().map(|r| r.code);
                assert_eq!(
                    got,
                    expect(letter),
                    "{action:?} by {:?} {:?} in {:?}",
                    caller.role,
                    caller.user,
                    caller.tenant
                );
            }
        }
    }

    #[test]
    fn refusals_keep_the_messages_clients_already_see() {
        let [viewer, .., operator] = callers();
        let t = TenantId::from_trusted("t");
        let s1 = UserId::from_trusted("s1");
        let stream = StreamRef {
            tenant: &t,
            seller: &s1,
        };
        let x = TenantId::from_trusted("x");
        let message = |who: &Identity, action| permit(who, action).unwrap_err().message;
        assert_eq!(message(&viewer, Action::Operate), "operator role required");
        assert_eq!(
            message(&operator, Action::ListStreams),
            "this action needs a tenant role"
        );
        assert_eq!(
            message(&viewer, Action::CreateStream),
            "seller or admin role required"
        );
        assert_eq!(
            message(&viewer, Action::PinProduct(stream)),
            "only the stream's seller or an admin may do this"
        );
        assert_eq!(
            message(&operator, Action::EndStream(stream)),
            "stream not found"
        );
        assert_eq!(message(&viewer, Action::ReadDrop(&x)), "drop not found");
        assert_eq!(message(&viewer, Action::ReadTenant(&x)), "tenant not found");
        assert_eq!(
            message(&viewer, Action::Chat { joined: false }),
            "join the stream first"
        );
    }
}
