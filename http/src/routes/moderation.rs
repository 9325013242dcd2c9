//! Moderation, contract section 8: deleting chat, mutes, chat settings and the moderation log of
//! a stream (its seller, the tenant's admins and moderators), and tenant bans.
//!
//! Stream actions go through the stream's actor (which stores them with their log entry and
//! applies them in order with the chat); bans are the tenant's, stored here and enforced by the
//! engine's ban list on every node.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use liveshop_engine::auth::{Action, Identity, Role, permit};
use liveshop_engine::ids::ChatId;
use liveshop_engine::moderation::{
    Ban, ChatSettings, ModerationAction, ModerationEntry, Mute, SettingsPatch, validate_duration,
    validate_reason,
};
use liveshop_engine::records::StreamStatus;
use liveshop_engine::{ErrorCode, TenantId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::stream_ref;
use super::streams::visible_stream;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, Caller};
use crate::state::AppState;

/// Most entries `GET /v1/streams/{id}/moderation-log` answers.
pub const LOG_LIMIT: u32 = 500;

/// Loads a stream the caller may moderate.
async fn moderated_stream(
    state: &AppState,
    caller: &Identity,
    id: &str,
) -> ApiResult<liveshop_engine::records::Stream> {
    let stream = visible_stream(state, caller, id).await?;
    permit(caller, Action::Moderate(stream_ref(&stream)))?;
    Ok(stream)
}

fn user_field(value: &str) -> ApiResult<UserId> {
    UserId::parse(value)
        .map_err(|_| ApiError::field("user", "must be a user id (1 to 128 characters)"))
}

/// Deletes a chat message: stored and logged, announced by `chat_deleted`, left out of later
/// snapshots and replays. 204, also when it was deleted already.
#[utoipa::path(
    delete,
    path = "/v1/streams/{id}/chat/{message}",
    tag = "moderation",
    params(
        ("id" = String, Path, description = "Stream id"),
        ("message" = String, Path, description = "Chat message id"),
    ),
    responses(
        (status = 204, description = "Deleted (also when it was deleted already)"),
        (status = 403, description = "`forbidden`: only the stream's seller, or the tenant's admins and moderators"),
        (status = 404, description = "`not_found`: no such stream or message in the caller's tenant"),
    ),
    security(("bearer" = [])),
)]
pub async fn delete_message(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((id, message)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let stream = moderated_stream(&state, &caller, &id).await?;
    let message = ChatId::parse(&message).map_err(|_| ApiError::not_found("message"))?;
    state
        .engine
        .delete_chat(
            &stream.tenant,
            &stream.id,
            message.clone(),
            caller.user.clone(),
        )
        .await?;
    tracing::info!(stream_id = %stream.id, message_id = %message, "chat message deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /v1/streams/{id}/mutes`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MuteBody {
    /// The user id to mute.
    #[schema(min_length = 1, max_length = 128)]
    user: String,
    /// How long, in seconds (at most a year).
    #[schema(minimum = 1, maximum = 31_622_400)]
    duration_seconds: i64,
    /// Why, up to 500 characters; kept in the moderation log.
    #[serde(default)]
    reason: Option<String>,
}

/// Mutes a user in the stream's chat: their `chat` is refused with `muted` until it lapses.
#[utoipa::path(
    post,
    path = "/v1/streams/{id}/mutes",
    tag = "moderation",
    params(("id" = String, Path, description = "Stream id")),
    request_body = MuteBody,
    responses(
        (status = 201, description = "The mute", body = Mute),
        (status = 400, description = "`bad_request`: a field fails its rules"),
        (status = 403, description = "`forbidden`: only the stream's seller, or the tenant's admins and moderators"),
        (status = 404, description = "`not_found`: no such stream in the caller's tenant"),
    ),
    security(("bearer" = [])),
)]
pub async fn mute(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<MuteBody>,
) -> ApiResult<(StatusCode, Json<Mute>)> {
    let stream = moderated_stream(&state, &caller, &id).await?;
    let user = user_field(&body.user)?;
    let duration = validate_duration("duration_seconds", body.duration_seconds)?;
    let reason = validate_reason(body.reason.as_deref())?;
    let mute = state
        .engine
        .mute(
            &stream.tenant,
            &stream.id,
            user,
            duration,
            caller.user.clone(),
            reason,
        )
        .await?;
    tracing::info!(stream_id = %stream.id, muted = %mute.user, until = %mute.until.to_rfc3339(), "user muted");
    Ok((StatusCode::CREATED, Json(mute)))
}

/// Body of `PATCH /v1/streams/{id}/chat-settings`: the fields given replace the current ones.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    /// One message per user per this many seconds; 0 turns slow mode off.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 3_600)]
    slow_mode_seconds: Option<u32>,
    /// Words or phrases a message may not hold (whole words, case-insensitive); at most 2000,
    /// each 1 to 100 characters with a letter or a digit. An empty list clears them.
    #[serde(default)]
    #[schema(max_items = 2_000)]
    blocked_words: Option<Vec<String>>,
}

/// Changes slow mode and the blocked words; answers every setting after the change.
#[utoipa::path(
    patch,
    path = "/v1/streams/{id}/chat-settings",
    tag = "moderation",
    params(("id" = String, Path, description = "Stream id")),
    request_body = SettingsBody,
    responses(
        (status = 200, description = "The settings after the change", body = ChatSettings),
        (status = 400, description = "`bad_request`: a field fails its rules"),
        (status = 403, description = "`forbidden`: only the stream's seller, or the tenant's admins and moderators"),
        (status = 404, description = "`not_found`: no such stream in the caller's tenant"),
    ),
    security(("bearer" = [])),
)]
pub async fn patch_settings(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SettingsBody>,
) -> ApiResult<Json<ChatSettings>> {
    let stream = moderated_stream(&state, &caller, &id).await?;
    let patch = SettingsPatch {
        slow_mode_seconds: body.slow_mode_seconds,
        blocked_words: body.blocked_words,
    };
    let settings = state
        .engine
        .chat_settings(
            &stream.tenant,
            &stream.id,
            Some((patch, caller.user.clone())),
        )
        .await?;
    tracing::info!(
        stream_id = %stream.id,
        slow_mode_seconds = settings.slow_mode_seconds,
        blocked_words = settings.blocked_words.len(),
        "chat settings changed"
    );
    Ok(Json(settings))
}

/// Reads the chat settings (moderators only: the word list is not for viewers to work around).
#[utoipa::path(
    get,
    path = "/v1/streams/{id}/chat-settings",
    tag = "moderation",
    params(("id" = String, Path, description = "Stream id")),
    responses(
        (status = 200, description = "The stream's chat settings", body = ChatSettings),
        (status = 403, description = "`forbidden`: only the stream's seller, or the tenant's admins and moderators"),
        (status = 404, description = "`not_found`: no such stream in the caller's tenant"),
    ),
    security(("bearer" = [])),
)]
pub async fn get_settings(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ChatSettings>> {
    let stream = moderated_stream(&state, &caller, &id).await?;
    let settings = state
        .engine
        .chat_settings(&stream.tenant, &stream.id, None)
        .await?;
    Ok(Json(settings))
}

/// The stream's moderation log, newest first (at most [`LOG_LIMIT`] entries).
#[utoipa::path(
    get,
    path = "/v1/streams/{id}/moderation-log",
    tag = "moderation",
    params(("id" = String, Path, description = "Stream id")),
    responses(
        (status = 200, description = "The newest 500 entries at most, newest first", body = crate::openapi::ModerationLog),
        (status = 403, description = "`forbidden`: only the stream's seller, or the tenant's admins and moderators"),
        (status = 404, description = "`not_found`: no such stream in the caller's tenant"),
    ),
    security(("bearer" = [])),
)]
pub async fn log(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let stream = moderated_stream(&state, &caller, &id).await?;
    let items = state.store.moderation_log(&stream.id, LOG_LIMIT).await?;
    Ok(Json(json!({ "items": items })))
}

/// Body of `POST /v1/tenants/{id}/bans`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BanBody {
    /// The user id to ban.
    #[schema(min_length = 1, max_length = 128)]
    user: String,
    /// Why, up to 500 characters; kept with the ban and in the moderation logs.
    #[serde(default)]
    reason: Option<String>,
    /// How long, in seconds (at most a year); without it the ban holds for good.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 31_622_400)]
    duration_seconds: Option<i64>,
}

/// Checks that the caller may ban in tenant `id` (a seller only a viewer of its own streams).
async fn ban_target(
    state: &AppState,
    caller: &Identity,
    id: &str,
    user: &UserId,
) -> ApiResult<TenantId> {
    let tenant = TenantId::parse(id).map_err(|_| ApiError::not_found("tenant"))?;
    permit(caller, Action::Ban(&tenant))?;
    if user == &caller.user {
        return Err(ApiError::field("user", "you cannot ban yourself"));
    }
    if caller.role == Role::Seller
        && !state
            .store
            .chatted_with_seller(&tenant, &caller.user, user)
            .await?
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "a seller may ban only viewers who chatted in one of its streams",
        ));
    }
    Ok(tenant)
}

/// One log entry per stream of the tenant live now, so each live show's log has the ban.
async fn entries_for_live_streams(
    state: &AppState,
    tenant: &TenantId,
    actor: &UserId,
    action: ModerationAction,
    target: &UserId,
    reason: Option<&str>,
) -> ApiResult<Vec<ModerationEntry>> {
    let at = liveshop_actors::clock::now();
    let live = state
        .store
        .streams(tenant, Some(StreamStatus::Live))
        .await?;
    Ok(live
        .into_iter()
        .map(|stream| ModerationEntry {
            stream: stream.id,
            at,
            actor: actor.clone(),
            action,
            target: target.as_str().to_owned(),
            reason: reason.map(str::to_owned),
        })
        .collect())
}

/// Bans a user from the tenant: their connections close with 1008 on every node; upgrades and
/// REST calls get 403 `banned` until it lapses (without `duration_seconds`, for good).
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/bans",
    tag = "moderation",
    params(("id" = String, Path, description = "Tenant id")),
    request_body = BanBody,
    responses(
        (status = 201, description = "The ban", body = Ban),
        (status = 400, description = "`bad_request`: a field fails its rules, or the caller names itself"),
        (status = 403, description = "`forbidden`: only the tenant's admins, moderators and sellers (a seller only viewers who chatted in its streams)"),
        (status = 404, description = "`not_found`: not the caller's tenant"),
    ),
    security(("bearer" = [])),
)]
pub async fn ban(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<BanBody>,
) -> ApiResult<(StatusCode, Json<Ban>)> {
    let user = user_field(&body.user)?;
    let tenant = ban_target(&state, &caller, &id, &user).await?;
    let reason = validate_reason(body.reason.as_deref())?;
    let at = liveshop_actors::clock::now();
    let until = match body.duration_seconds {
        None => None,
        Some(seconds) => {
            Some(at.plus_millis(validate_duration("duration_seconds", seconds)? * 1_000))
        }
    };
    let entries = entries_for_live_streams(
        &state,
        &tenant,
        &caller.user,
        ModerationAction::Ban,
        &user,
        reason.as_deref(),
    )
    .await?;
    let ban = Ban {
        tenant,
        user,
        until,
        reason,
        by: caller.user.clone(),
        at,
    };
    let ban = state.engine.ban(ban, &entries).await?;
    tracing::info!(tenant_id = %ban.tenant, banned = %ban.user, until = ?ban.until.map(|u| u.to_rfc3339()), "user banned");
    Ok((StatusCode::CREATED, Json(ban)))
}

/// The tenant's bans in force, newest first.
#[utoipa::path(
    get,
    path = "/v1/tenants/{id}/bans",
    tag = "moderation",
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The bans in force, newest first", body = crate::openapi::BanList),
        (status = 403, description = "`forbidden`: only the tenant's admins, moderators and sellers"),
        (status = 404, description = "`not_found`: not the caller's tenant"),
    ),
    security(("bearer" = [])),
)]
pub async fn list_bans(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let tenant = TenantId::parse(&id).map_err(|_| ApiError::not_found("tenant"))?;
    permit(&caller, Action::Ban(&tenant))?;
    let items = state
        .store
        .bans_of_tenant(&tenant, liveshop_actors::clock::now())
        .await?;
    Ok(Json(json!({ "items": items })))
}

/// Lifts a ban before it lapses: 204, or 404 when the user is not banned.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{id}/bans/{user}",
    tag = "moderation",
    params(
        ("id" = String, Path, description = "Tenant id"),
        ("user" = String, Path, description = "The banned user's id"),
    ),
    responses(
        (status = 204, description = "The ban is lifted"),
        (status = 400, description = "`bad_request`: the caller names itself"),
        (status = 403, description = "`forbidden`: only the tenant's admins, moderators and sellers (a seller only viewers who chatted in its streams)"),
        (status = 404, description = "`not_found`: not the caller's tenant, or the user is not banned"),
    ),
    security(("bearer" = [])),
)]
pub async fn unban(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((id, user)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let user = UserId::parse(&user).map_err(|_| ApiError::not_found("ban"))?;
    let tenant = ban_target(&state, &caller, &id, &user).await?;
    let entries = entries_for_live_streams(
        &state,
        &tenant,
        &caller.user,
        ModerationAction::Unban,
        &user,
        None,
    )
    .await?;
    if state.engine.unban(&tenant, &user, &entries).await? {
        tracing::info!(tenant_id = %tenant, unbanned = %user, "ban lifted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("ban"))
    }
}
