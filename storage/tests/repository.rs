//! One repository test suite, run against both SQLite and Postgres: each case is written once as
//! `async fn case_x(store: &SqlStore)` and `both!` generates `x::on_sqlite` and `x::on_postgres`.

use liveshop_engine::ids::{ChatId, ClaimId, DropId, ProductId, Slug, StreamId, TenantId, UserId};
use liveshop_engine::moderation::{Ban, ChatSettings, ModerationAction, ModerationEntry, Mute};
use liveshop_engine::records::{
    ChatAuthor, ChatMessage, Claim, ClaimStatus, Drop, DropStatus, Product, Stream, StreamStatus,
    Tenant, UserSeen,
};
use std::sync::Arc;

use liveshop_engine::storage::{
    CatalogStore, ChatStore, DropStore, Fence, Health, ModerationStore, NewClaim, Storage,
    StorageError, StreamModeration, StreamStore, TenantStore,
};
use liveshop_engine::timestamp::Timestamp;
use liveshop_storage::testing::fresh_store;
use liveshop_storage::{Backend, SqlStore};

macro_rules! both {
    ($($name:ident => $case:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;

                #[tokio::test]
                async fn on_sqlite() {
                    let (db, store) = fresh_store(Backend::Sqlite).await;
                    assert_eq!(store.backend(), Backend::Sqlite);
                    $case(&store).await;
                    store.close().await;
                    drop(db);
                }

                #[tokio::test]
                async fn on_postgres() {
                    let (db, store) = fresh_store(Backend::Postgres).await;
                    assert_eq!(store.backend(), Backend::Postgres);
                    $case(&store).await;
                    store.close().await;
                    drop(db);
                }
            }
        )*
    };
}

both! {
    ping => case_ping,
    migrate_twice => case_migrate_twice,
    tenants => case_tenants,
    users_seen => case_users_seen,
    users_seen_in_a_batch => case_users_seen_in_a_batch,
    products => case_products,
    streams => case_streams,
    stream_status_pin_and_epoch => case_stream_status_pin_and_epoch,
    chat => case_chat,
    chat_large_batch => case_chat_large_batch,
    drops => case_drops,
    commit_claims => case_commit_claims,
    commit_claims_large_batch => case_commit_claims_large_batch,
    commit_claims_of_unknown_drop => case_commit_claims_of_unknown_drop,
    oversell_refused_whole => case_oversell_refused_whole,
    per_user_limit_refused_whole => case_per_user_limit_refused_whole,
    one_per_buyer_limit => case_one_per_buyer_limit,
    duplicate_idempotency_key => case_duplicate_idempotency_key,
    claims_lookups => case_claims_lookups,
    expire_claims => case_expire_claims,
    mark_claim_paid => case_mark_claim_paid,
    drop_status => case_drop_status,
    drops_to_recover => case_drops_to_recover,
    live_streams => case_live_streams,
    stale_owner_is_fenced_off => case_stale_owner_is_fenced_off,
    taking_a_fence_refuses_the_previous_owner => case_taking_a_fence_refuses_the_previous_owner,
    every_owner_write_is_fenced => case_every_owner_write_is_fenced,
    storage_narrows_to_one_aggregate => case_storage_narrows_to_one_aggregate,
    concurrent_batches_never_oversell => case_concurrent_batches_never_oversell,
    chat_deleted_before_and_after_it_is_written => case_chat_deleted_before_and_after_it_is_written,
    chat_deleted_twice => case_chat_deleted_twice,
    mutes_replace_and_lapse => case_mutes_replace_and_lapse,
    chat_settings_round_trip => case_chat_settings_round_trip,
    bans_hold_until_they_lapse => case_bans_hold_until_they_lapse,
    rebans_replace_and_unbans => case_rebans_replace_and_unbans,
    moderation_log_newest_first => case_moderation_log_newest_first,
    chatted_with_seller => case_chatted_with_seller,
    stale_owner_moderates_nothing => case_stale_owner_moderates_nothing,
}

// ---- fixtures -------------------------------------------------------------------------------

const T0: i64 = 1_795_770_000_000;

fn tenant(id: &str, slug: &str) -> Tenant {
    Tenant {
        id: TenantId::from_trusted(id),
        slug: Slug::parse(slug).expect("valid slug"),
        name: format!("Shop {slug}"),
        created_at: Timestamp(T0),
    }
}

fn product(tenant: &str, id: &str, sku: &str) -> Product {
    Product {
        id: ProductId::from_trusted(id),
        tenant: TenantId::from_trusted(tenant),
        sku: sku.to_owned(),
        title: format!("Product {sku}"),
        price_cents: 1999,
        currency: "EUR".to_owned(),
        image_url: None,
    }
}

fn stream(tenant: &str, id: &str) -> Stream {
    Stream {
        id: StreamId::from_trusted(id),
        tenant: TenantId::from_trusted(tenant),
        seller: UserId::from_trusted("seller-1"),
        title: format!("Show {id}"),
        status: StreamStatus::Scheduled,
        scheduled_at: Some(Timestamp(T0 + 60_000)),
        started_at: None,
        ended_at: None,
        pinned: None,
        viewers: 0,
    }
}

fn drop_record(id: &str, quantity: i64, per_user_limit: i64) -> Drop {
    Drop {
        id: DropId::from_trusted(id),
        tenant: TenantId::from_trusted("ten_a"),
        stream: StreamId::from_trusted("str_1"),
        product: ProductId::from_trusted("prd_1"),
        quantity,
        remaining: quantity,
        reserved: 0,
        sold: 0,
        per_user_limit,
        hold_seconds: 300,
        status: DropStatus::Open,
        opened_at: Timestamp(T0),
        ends_at: Some(Timestamp(T0 + 600_000)),
        closed_reason: None,
    }
}

fn claim(id: &str, drop: &str, user: &str, quantity: i64, key: &str, expires_at: i64) -> NewClaim {
    NewClaim {
        claim: Claim {
            id: ClaimId::from_trusted(id),
            tenant: TenantId::from_trusted("ten_a"),
            drop: DropId::from_trusted(drop),
            user: UserId::from_trusted(user),
            quantity,
            status: ClaimStatus::Reserved,
            idempotency_key: key.to_owned(),
            created_at: Timestamp(T0),
            expires_at: Timestamp(expires_at),
        },
    }
}

fn chat(id: &str, stream: &str, text: &str, at: i64) -> ChatMessage {
    ChatMessage {
        id: ChatId::from_trusted(id),
        stream: StreamId::from_trusted(stream),
        tenant: TenantId::from_trusted("ten_a"),
        user: ChatAuthor {
            id: UserId::from_trusted("viewer-1"),
            name: "Viewer One".to_owned(),
        },
        text: text.to_owned(),
        at: Timestamp(at),
    }
}

/// Tenant `ten_a` with product `prd_1` and live stream `str_1`.
async fn seed(store: &SqlStore) {
    store
        .create_tenant(&tenant("ten_a", "shop-a"))
        .await
        .unwrap();
    store
        .create_product(&product("ten_a", "prd_1", "SKU-1"))
        .await
        .unwrap();
    store
        .create_stream(&stream("ten_a", "str_1"))
        .await
        .unwrap();
}

/// `seed` plus drop `id`.
async fn seed_drop(store: &SqlStore, id: &str, quantity: i64, per_user_limit: i64) -> DropId {
    seed(store).await;
    store
        .create_drop(&drop_record(id, quantity, per_user_limit), &Fence::Unfenced)
        .await
        .unwrap();
    DropId::from_trusted(id)
}

async fn counts(store: &SqlStore, drop: &DropId) -> (i64, i64, i64) {
    let d = store.drop_by_id(drop).await.unwrap().expect("drop exists");
    assert_eq!(d.remaining, d.quantity - d.reserved - d.sold);
    (d.reserved, d.sold, d.remaining)
}

fn assert_constraint(result: Result<(), StorageError>, needle: &str) {
    match result {
        Err(StorageError::Constraint(message)) => {
            assert!(
                message.contains(needle),
                "{message:?} should mention {needle:?}"
            );
        }
        other => panic!("expected a constraint error mentioning {needle:?}, got {other:?}"),
    }
}

// ---- cases ----------------------------------------------------------------------------------

async fn case_ping(store: &SqlStore) {
    store.ping().await.unwrap();
}

async fn case_migrate_twice(store: &SqlStore) {
    store.migrate().await.unwrap();
    seed(store).await;
}

async fn case_tenants(store: &SqlStore) {
    let a = tenant("ten_a", "shop-a");
    store.create_tenant(&a).await.unwrap();
    assert_eq!(store.tenant(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        store
            .tenant(&TenantId::from_trusted("ten_none"))
            .await
            .unwrap(),
        None
    );

    let taken = tenant("ten_b", "shop-a");
    assert!(matches!(
        store.create_tenant(&taken).await,
        Err(StorageError::Conflict("slug"))
    ));
    assert_eq!(store.tenant(&taken.id).await.unwrap(), None);
}

async fn case_users_seen(store: &SqlStore) {
    store
        .create_tenant(&tenant("ten_a", "shop-a"))
        .await
        .unwrap();
    let mut user = UserSeen {
        tenant: TenantId::from_trusted("ten_a"),
        id: UserId::from_trusted("alice"),
        name: "Alice".to_owned(),
        role: "viewer".to_owned(),
        last_seen_at: Timestamp(T0),
    };
    store.record_user_seen(&user).await.unwrap();
    user.name = "Alice B.".to_owned();
    user.role = "seller".to_owned();
    user.last_seen_at = Timestamp(T0 + 1000);
    store.record_user_seen(&user).await.unwrap();
    let tenant_a = TenantId::from_trusted("ten_a");
    assert_eq!(
        store.user_seen(&tenant_a, &user.id).await.unwrap(),
        Some(user.clone())
    );

    let bob = UserSeen {
        id: UserId::from_trusted("bob"),
        name: "Bob".to_owned(),
        ..user.clone()
    };
    store.record_user_seen(&bob).await.unwrap();
    assert_eq!(store.users_seen(&tenant_a).await.unwrap(), vec![user, bob]);
    assert!(
        store
            .users_seen(&TenantId::from_trusted("ten_b"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn case_users_seen_in_a_batch(store: &SqlStore) {
    store
        .create_tenant(&tenant("ten_a", "shop-a"))
        .await
        .unwrap();
    let tenant_a = TenantId::from_trusted("ten_a");
    let mut batch: Vec<UserSeen> = (0..300)
        .map(|i| UserSeen {
            tenant: tenant_a.clone(),
            id: UserId::from_trusted(format!("u{i:03}")),
            name: format!("User {i}"),
            role: "viewer".to_owned(),
            last_seen_at: Timestamp(T0),
        })
        .collect();
    store.record_users_seen(&batch).await.unwrap();
    // A later batch updates the rows it names and leaves the others.
    batch[0].name = "Renamed".to_owned();
    store.record_users_seen(&batch[..1]).await.unwrap();
    let all = store.users_seen(&tenant_a).await.unwrap();
    assert_eq!(all.len(), 300);
    assert_eq!(all[0].name, "Renamed");
    assert_eq!(all[1].name, "User 1");

    // More than one statement's worth, with the same user twice in one batch: the latest
    // sighting wins, whatever its place in the batch.
    let mut big: Vec<UserSeen> = (0..1200)
        .map(|i| UserSeen {
            tenant: tenant_a.clone(),
            id: UserId::from_trusted(format!("v{i:04}")),
            name: format!("Viewer {i}"),
            role: "viewer".to_owned(),
            last_seen_at: Timestamp(T0),
        })
        .collect();
    big.push(UserSeen {
        name: "Later".to_owned(),
        last_seen_at: Timestamp(T0 + 5),
        ..big[7].clone()
    });
    big.push(UserSeen {
        name: "Earlier".to_owned(),
        last_seen_at: Timestamp(T0 - 5),
        ..big[7].clone()
    });
    store.record_users_seen(&big).await.unwrap();
    let all = store.users_seen(&tenant_a).await.unwrap();
    assert_eq!(all.len(), 1500);
    let v7 = all.iter().find(|u| u.id.as_str() == "v0007").unwrap();
    assert_eq!(v7.name, "Later");
    assert_eq!(v7.last_seen_at, Timestamp(T0 + 5));
}

async fn case_products(store: &SqlStore) {
    store
        .create_tenant(&tenant("ten_a", "shop-a"))
        .await
        .unwrap();
    store
        .create_tenant(&tenant("ten_b", "shop-b"))
        .await
        .unwrap();
    let p1 = product("ten_a", "prd_1", "SKU-1");
    let mut p2 = product("ten_a", "prd_2", "SKU-2");
    p2.image_url = Some("https://img.example/2.png".to_owned());
    store.create_product(&p1).await.unwrap();
    store.create_product(&p2).await.unwrap();

    assert!(matches!(
        store
            .create_product(&product("ten_a", "prd_3", "SKU-1"))
            .await,
        Err(StorageError::Conflict("sku"))
    ));
    // The same sku in another tenant is fine.
    let other = product("ten_b", "prd_4", "SKU-1");
    store.create_product(&other).await.unwrap();

    let tenant_a = TenantId::from_trusted("ten_a");
    assert_eq!(
        store.products(&tenant_a).await.unwrap(),
        vec![p1.clone(), p2.clone()]
    );
    assert_eq!(
        store
            .products(&TenantId::from_trusted("ten_b"))
            .await
            .unwrap(),
        vec![other.clone()]
    );
    assert_eq!(store.product(&tenant_a, &p2.id).await.unwrap(), Some(p2));
    // A product of another tenant is not found through this tenant.
    assert_eq!(store.product(&tenant_a, &other.id).await.unwrap(), None);
}

async fn case_streams(store: &SqlStore) {
    store
        .create_tenant(&tenant("ten_a", "shop-a"))
        .await
        .unwrap();
    store
        .create_tenant(&tenant("ten_b", "shop-b"))
        .await
        .unwrap();
    let s1 = stream("ten_a", "str_1");
    let s2 = stream("ten_a", "str_2");
    let s3 = stream("ten_a", "str_3");
    let other = stream("ten_b", "str_4");
    for s in [&s1, &s2, &s3, &other] {
        store.create_stream(s).await.unwrap();
    }
    assert_eq!(store.stream(&s2.id).await.unwrap(), Some(s2.clone()));
    assert_eq!(
        store.stream(&StreamId::from_trusted("nope")).await.unwrap(),
        None
    );

    let tenant_a = TenantId::from_trusted("ten_a");
    let ids = |list: Vec<Stream>| list.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.streams(&tenant_a, None).await.unwrap()),
        vec![s3.id.clone(), s2.id.clone(), s1.id.clone()],
        "newest first, own tenant only"
    );

    store
        .update_stream_status(
            &s1.id,
            StreamStatus::Live,
            Some(Timestamp(T0 + 5)),
            None,
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    store
        .update_stream_status(
            &s3.id,
            StreamStatus::Live,
            Some(Timestamp(T0 + 6)),
            None,
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    assert_eq!(
        ids(store
            .streams(&tenant_a, Some(StreamStatus::Live))
            .await
            .unwrap()),
        vec![s3.id.clone(), s1.id.clone()]
    );
    assert_eq!(
        ids(store
            .streams(&tenant_a, Some(StreamStatus::Scheduled))
            .await
            .unwrap()),
        vec![s2.id.clone()]
    );
    assert!(
        store
            .streams(&tenant_a, Some(StreamStatus::Ended))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn case_stream_status_pin_and_epoch(store: &SqlStore) {
    seed(store).await;
    let id = StreamId::from_trusted("str_1");
    store
        .update_stream_status(
            &id,
            StreamStatus::Live,
            Some(Timestamp(T0 + 1)),
            None,
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    store
        .update_stream_status(
            &id,
            StreamStatus::Ended,
            Some(Timestamp(T0 + 1)),
            Some(Timestamp(T0 + 2)),
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    let s = store.stream(&id).await.unwrap().unwrap();
    assert_eq!(s.status, StreamStatus::Ended);
    assert_eq!(s.started_at, Some(Timestamp(T0 + 1)));
    assert_eq!(s.ended_at, Some(Timestamp(T0 + 2)));

    let product = ProductId::from_trusted("prd_1");
    store
        .set_pinned(&id, Some(&product), &Fence::Unfenced)
        .await
        .unwrap();
    assert_eq!(
        store.stream(&id).await.unwrap().unwrap().pinned,
        Some(product)
    );
    store.set_pinned(&id, None, &Fence::Unfenced).await.unwrap();
    assert_eq!(store.stream(&id).await.unwrap().unwrap().pinned, None);

    assert_eq!(store.next_epoch(&id).await.unwrap(), 1);
    assert_eq!(store.next_epoch(&id).await.unwrap(), 2);
    assert_eq!(store.next_epoch(&id).await.unwrap(), 3);
    assert!(
        store
            .next_epoch(&StreamId::from_trusted("nope"))
            .await
            .is_err()
    );
}

async fn case_chat(store: &SqlStore) {
    seed(store).await;
    store
        .create_stream(&stream("ten_a", "str_2"))
        .await
        .unwrap();
    let s1 = StreamId::from_trusted("str_1");
    store.insert_chat(&[], &Fence::Unfenced).await.unwrap();
    let batch: Vec<_> = (0..5)
        .map(|i| chat(&format!("msg_{i}"), "str_1", &format!("hello {i}"), T0 + i))
        .collect();
    store.insert_chat(&batch, &Fence::Unfenced).await.unwrap();
    store
        .insert_chat(
            &[chat("msg_other", "str_2", "elsewhere", T0 + 100)],
            &Fence::Unfenced,
        )
        .await
        .unwrap();

    assert_eq!(
        store.recent_chat(&s1, 10).await.unwrap(),
        batch,
        "all, oldest first"
    );
    assert_eq!(
        store.recent_chat(&s1, 3).await.unwrap(),
        batch[2..].to_vec(),
        "the most recent 3, oldest first"
    );
    assert!(store.recent_chat(&s1, 0).await.unwrap().is_empty());
}

async fn case_chat_large_batch(store: &SqlStore) {
    seed(store).await;
    let batch: Vec<_> = (0..1200)
        .map(|i| chat(&format!("msg_{i}"), "str_1", "x", T0 + i))
        .collect();
    store.insert_chat(&batch, &Fence::Unfenced).await.unwrap();
    let recent = store
        .recent_chat(&StreamId::from_trusted("str_1"), 2000)
        .await
        .unwrap();
    assert_eq!(recent, batch);
}

async fn case_drops(store: &SqlStore) {
    let id = seed_drop(store, "drp_1", 10, 2).await;
    let loaded = store.drop_by_id(&id).await.unwrap().unwrap();
    assert_eq!(loaded, drop_record("drp_1", 10, 2));
    assert_eq!(loaded.remaining, 10);
    assert_eq!(
        store
            .drop_by_id(&DropId::from_trusted("nope"))
            .await
            .unwrap(),
        None
    );

    let mut second = drop_record("drp_2", 3, 1);
    second.ends_at = None;
    store.create_drop(&second, &Fence::Unfenced).await.unwrap();
    let of_stream = store
        .drops_of_stream(&StreamId::from_trusted("str_1"))
        .await
        .unwrap();
    assert_eq!(
        of_stream.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["drp_1", "drp_2"]
    );
    assert_eq!(of_stream[1].ends_at, None);
}

async fn case_commit_claims(store: &SqlStore) {
    let drop = seed_drop(store, "drp_1", 10, 3).await;
    store
        .commit_claims(&drop, &[], &Fence::Unfenced)
        .await
        .unwrap();
    let batch = vec![
        claim("clm_1", "drp_1", "alice", 2, "k1", T0 + 300_000),
        claim("clm_2", "drp_1", "bob", 1, "k1", T0 + 300_000),
        claim("clm_3", "drp_1", "alice", 1, "k2", T0 + 300_000),
    ];
    store
        .commit_claims(&drop, &batch, &Fence::Unfenced)
        .await
        .unwrap();
    assert_eq!(counts(store, &drop).await, (4, 0, 6));
    let stored = store.claims_of_drop(&drop).await.unwrap();
    assert_eq!(
        stored,
        batch.iter().map(|c| c.claim.clone()).collect::<Vec<_>>()
    );

    // A second batch adds to what is there.
    store
        .commit_claims(
            &drop,
            &[claim("clm_4", "drp_1", "bob", 2, "k2", T0 + 300_000)],
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    assert_eq!(counts(store, &drop).await, (6, 0, 4));
}

async fn case_commit_claims_large_batch(store: &SqlStore) {
    let drop = seed_drop(store, "drp_1", 5000, 2).await;
    let batch: Vec<_> = (0..1500)
        .map(|i| {
            claim(
                &format!("clm_{i}"),
                "drp_1",
                &format!("user-{}", i % 750),
                1,
                &format!("k{i}"),
                T0 + 600_000 + i64::from(i),
            )
        })
        .collect();
    store
        .commit_claims(&drop, &batch, &Fence::Unfenced)
        .await
        .unwrap();
    assert_eq!(counts(store, &drop).await, (1500, 0, 3500));
    let stored = store.claims_of_drop(&drop).await.unwrap();
    assert_eq!(stored.len(), 1500);
    // Every row's values landed in its own columns, also in the last chunk.
    for (written, read) in batch.iter().zip(&stored) {
        assert_eq!(read, &written.claim);
    }
}

async fn case_commit_claims_of_unknown_drop(store: &SqlStore) {
    seed_drop(store, "drp_1", 10, 3).await;
    let ghost = DropId::from_trusted("drp_ghost");
    let batch = vec![claim("clm_1", "drp_ghost", "alice", 1, "k1", T0)];
    assert!(matches!(
        store.commit_claims(&ghost, &batch, &Fence::Unfenced).await,
        Err(StorageError::Constraint(_))
    ));
    // Nothing was written: no claim without its drop, and the real drop is untouched.
    assert!(store.claims_of_drop(&ghost).await.unwrap().is_empty());
    let alice = UserId::from_trusted("alice");
    assert_eq!(
        store.claim_by_key(&ghost, &alice, "k1").await.unwrap(),
        None
    );
    assert_eq!(
        counts(store, &DropId::from_trusted("drp_1")).await,
        (0, 0, 10)
    );
}

async fn case_oversell_refused_whole(store: &SqlStore) {
    let drop = seed_drop(store, "drp_1", 3, 5).await;
    store
        .commit_claims(
            &drop,
            &[claim("clm_1", "drp_1", "alice", 2, "k1", T0)],
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    let batch = vec![
        claim("clm_2", "drp_1", "bob", 1, "k1", T0),
        claim("clm_3", "drp_1", "carol", 1, "k1", T0),
    ];
    assert_constraint(
        store.commit_claims(&drop, &batch, &Fence::Unfenced).await,
        "oversold",
    );
    assert_eq!(
        counts(store, &drop).await,
        (2, 0, 1),
        "nothing of the batch written"
    );
    assert_eq!(store.claims_of_drop(&drop).await.unwrap().len(), 1);
    let bob = UserId::from_trusted("bob");
    assert_eq!(store.claim_by_key(&drop, &bob, "k1").await.unwrap(), None);

    // The remaining unit can still be taken, by a user with no refused holdings left behind.
    store
        .commit_claims(
            &drop,
            &[claim("clm_4", "drp_1", "bob", 1, "k1", T0)],
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    assert_eq!(counts(store, &drop).await, (3, 0, 0));
}

async fn case_per_user_limit_refused_whole(store: &SqlStore) {
    let drop = seed_drop(store, "drp_1", 100, 2).await;
    store
        .commit_claims(
            &drop,
            &[claim("clm_1", "drp_1", "alice", 1, "k1", T0)],
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    // Bob's claim is fine on its own, but alice would hold 3 > 2: the whole batch is refused.
    let batch = vec![
        claim("clm_2", "drp_1", "bob", 1, "k1", T0),
        claim("clm_3", "drp_1", "alice", 1, "k2", T0),
        claim("clm_4", "drp_1", "alice", 1, "k3", T0),
    ];
    assert_constraint(
        store.commit_claims(&drop, &batch, &Fence::Unfenced).await,
        "per-user limit",
    );
    assert_eq!(counts(store, &drop).await, (1, 0, 99));
    assert_eq!(store.claims_of_drop(&drop).await.unwrap().len(), 1);

    // A single claim over the limit is refused too.
    assert_constraint(
        store
            .commit_claims(
                &drop,
                &[claim("clm_5", "drp_1", "carol", 3, "k1", T0)],
                &Fence::Unfenced,
            )
            .await,
        "per-user limit",
    );
    // Up to the limit is fine.
    store
        .commit_claims(
            &drop,
            &[
                claim("clm_6", "drp_1", "alice", 1, "k2", T0),
                claim("clm_7", "drp_1", "carol", 2, "k1", T0),
            ],
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    assert_eq!(counts(store, &drop).await, (4, 0, 96));
}

/// A drop of one unit per buyer (on Postgres enforced by a partial unique index on live claims
/// instead of `holdings` rows): a second live claim of a buyer is refused, whole batch and all;
/// a paid claim keeps counting; an expired one frees the buyer.
async fn case_one_per_buyer_limit(store: &SqlStore) {
    let drop = seed_drop(store, "drp_1", 100, 1).await;
    store
        .commit_claims(
            &drop,
            &[
                claim("clm_1", "drp_1", "alice", 1, "k1", T0 + 100),
                claim("clm_2", "drp_1", "bob", 1, "k1", T0 + 100_000),
            ],
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    // Carol twice in one batch, and alice again: refused whole.
    let batch = vec![
        claim("clm_3", "drp_1", "carol", 1, "k1", T0),
        claim("clm_4", "drp_1", "carol", 1, "k2", T0),
    ];
    assert_constraint(
        store.commit_claims(&drop, &batch, &Fence::Unfenced).await,
        "per-user limit",
    );
    assert_constraint(
        store
            .commit_claims(
                &drop,
                &[claim("clm_5", "drp_1", "alice", 1, "k2", T0)],
                &Fence::Unfenced,
            )
            .await,
        "per-user limit",
    );
    // Two units in one claim pass no limit of one.
    assert!(matches!(
        store
            .commit_claims(
                &drop,
                &[claim("clm_6", "drp_1", "dave", 2, "k1", T0)],
                &Fence::Unfenced
            )
            .await,
        Err(StorageError::Constraint(_))
    ));
    assert_eq!(counts(store, &drop).await, (2, 0, 98));

    // Bob pays: a sold unit still counts toward his limit.
    let paid = store
        .mark_claim_paid(&ClaimId::from_trusted("clm_2"), &Fence::Unfenced)
        .await
        .unwrap()
        .expect("reserved claim");
    assert_eq!(paid.status, ClaimStatus::Paid);
    assert_constraint(
        store
            .commit_claims(
                &drop,
                &[claim("clm_7", "drp_1", "bob", 1, "k2", T0)],
                &Fence::Unfenced,
            )
            .await,
        "per-user limit",
    );
    // Alice's hold expires: she may claim again, once.
    let expired = store
        .expire_claims(&drop, Timestamp(T0 + 200), &Fence::Unfenced)
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);
    store
        .commit_claims(
            &drop,
            &[claim("clm_8", "drp_1", "alice", 1, "k3", T0 + 300_000)],
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    assert_eq!(counts(store, &drop).await, (1, 1, 98));
    assert_constraint(
        store
            .commit_claims(
                &drop,
                &[claim("clm_9", "drp_1", "alice", 1, "k4", T0)],
                &Fence::Unfenced,
            )
            .await,
        "per-user limit",
    );
}

async fn case_duplicate_idempotency_key(store: &SqlStore) {
    let drop = seed_drop(store, "drp_1", 10, 5).await;
    store
        .commit_claims(
            &drop,
            &[claim("clm_1", "drp_1", "alice", 1, "k1", T0)],
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    let batch = vec![
        claim("clm_2", "drp_1", "bob", 1, "k1", T0),
        claim("clm_3", "drp_1", "alice", 1, "k1", T0),
    ];
    assert_constraint(
        store.commit_claims(&drop, &batch, &Fence::Unfenced).await,
        "idempotency key",
    );
    assert_eq!(counts(store, &drop).await, (1, 0, 9));
    assert_eq!(store.claims_of_drop(&drop).await.unwrap().len(), 1);
}

async fn case_claims_lookups(store: &SqlStore) {
    let drop = seed_drop(store, "drp_1", 10, 5).await;
    store
        .create_drop(&drop_record("drp_2", 10, 5), &Fence::Unfenced)
        .await
        .unwrap();
    let d2 = DropId::from_trusted("drp_2");
    let first = claim("clm_1", "drp_1", "alice", 1, "k1", T0);
    let second = claim("clm_2", "drp_2", "alice", 2, "k1", T0);
    store
        .commit_claims(&drop, std::slice::from_ref(&first), &Fence::Unfenced)
        .await
        .unwrap();
    store
        .commit_claims(&d2, std::slice::from_ref(&second), &Fence::Unfenced)
        .await
        .unwrap();
    store
        .commit_claims(
            &drop,
            &[claim("clm_3", "drp_1", "bob", 1, "k1", T0)],
            &Fence::Unfenced,
        )
        .await
        .unwrap();

    let alice = UserId::from_trusted("alice");
    assert_eq!(
        store.claim_by_key(&drop, &alice, "k1").await.unwrap(),
        Some(first.claim.clone())
    );
    assert_eq!(store.claim_by_key(&drop, &alice, "k2").await.unwrap(), None);
    assert_eq!(
        store.claim_by_key(&d2, &alice, "k1").await.unwrap(),
        Some(second.claim.clone())
    );

    let mine = store
        .claims_of_user(&TenantId::from_trusted("ten_a"), &alice)
        .await
        .unwrap();
    assert_eq!(
        mine,
        vec![second.claim, first.claim],
        "newest first, own claims only"
    );
    assert!(
        store
            .claims_of_user(&TenantId::from_trusted("ten_other"), &alice)
            .await
            .unwrap()
            .is_empty()
    );

    // A claim for another drop in the batch is refused before anything is written.
    assert_constraint(
        store
            .commit_claims(
                &drop,
                &[claim("clm_9", "drp_2", "carol", 1, "k1", T0)],
                &Fence::Unfenced,
            )
            .await,
        "drp_2",
    );
}

async fn case_expire_claims(store: &SqlStore) {
    let drop = seed_drop(store, "drp_1", 5, 2).await;
    store
        .commit_claims(
            &drop,
            &[
                claim("clm_1", "drp_1", "alice", 2, "k1", T0 + 100),
                claim("clm_2", "drp_1", "bob", 1, "k1", T0 + 200),
                claim("clm_3", "drp_1", "carol", 1, "k1", T0 + 300),
            ],
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    assert_eq!(counts(store, &drop).await, (4, 0, 1));
    assert!(
        store
            .expire_claims(&drop, Timestamp(T0 + 99), &Fence::Unfenced)
            .await
            .unwrap()
            .is_empty()
    );

    let expired = store
        .expire_claims(&drop, Timestamp(T0 + 200), &Fence::Unfenced)
        .await
        .unwrap();
    let mut ids: Vec<_> = expired.iter().map(|c| c.id.as_str().to_owned()).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["clm_1", "clm_2"],
        "only claims due at `now` (inclusive)"
    );
    assert!(expired.iter().all(|c| c.status == ClaimStatus::Expired));
    assert_eq!(counts(store, &drop).await, (1, 0, 4), "units returned");
    let carol = store
        .claim_by_key(&drop, &UserId::from_trusted("carol"), "k1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(carol.status, ClaimStatus::Reserved);
    // Expiring again finds nothing new.
    assert!(
        store
            .expire_claims(&drop, Timestamp(T0 + 200), &Fence::Unfenced)
            .await
            .unwrap()
            .is_empty()
    );

    // Expired units no longer count toward alice's limit: she may claim 2 again.
    store
        .commit_claims(
            &drop,
            &[claim("clm_4", "drp_1", "alice", 2, "k2", T0 + 1000)],
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    assert_eq!(counts(store, &drop).await, (3, 0, 2));
}

async fn case_mark_claim_paid(store: &SqlStore) {
    let drop = seed_drop(store, "drp_1", 5, 2).await;
    store
        .commit_claims(
            &drop,
            &[
                claim("clm_1", "drp_1", "alice", 2, "k1", T0 + 100),
                claim("clm_2", "drp_1", "bob", 1, "k1", T0 + 100),
            ],
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    let paid = store
        .mark_claim_paid(&ClaimId::from_trusted("clm_1"), &Fence::Unfenced)
        .await
        .unwrap()
        .expect("reserved claim gets paid");
    assert_eq!(paid.status, ClaimStatus::Paid);
    assert_eq!(paid.quantity, 2);
    assert_eq!(counts(store, &drop).await, (1, 2, 2));

    // Paying twice, or paying an unknown claim, does nothing.
    assert_eq!(
        store
            .mark_claim_paid(&ClaimId::from_trusted("clm_1"), &Fence::Unfenced)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .mark_claim_paid(&ClaimId::from_trusted("nope"), &Fence::Unfenced)
            .await
            .unwrap(),
        None
    );

    // Paid claims never expire, and still count toward the limit.
    let expired = store
        .expire_claims(&drop, Timestamp(T0 + 1000), &Fence::Unfenced)
        .await
        .unwrap();
    assert_eq!(
        expired.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["clm_2"]
    );
    assert_eq!(counts(store, &drop).await, (0, 2, 3));
    assert_eq!(
        store
            .mark_claim_paid(&ClaimId::from_trusted("clm_2"), &Fence::Unfenced)
            .await
            .unwrap(),
        None
    );
    assert_constraint(
        store
            .commit_claims(
                &drop,
                &[claim("clm_3", "drp_1", "alice", 1, "k2", T0 + 2000)],
                &Fence::Unfenced,
            )
            .await,
        "per-user limit",
    );
}

async fn case_drop_status(store: &SqlStore) {
    seed_drop(store, "drp_1", 5, 1).await;
    store
        .create_drop(&drop_record("drp_2", 5, 1), &Fence::Unfenced)
        .await
        .unwrap();
    store
        .create_drop(&drop_record("drp_3", 5, 1), &Fence::Unfenced)
        .await
        .unwrap();

    store
        .set_drop_status(
            &DropId::from_trusted("drp_2"),
            DropStatus::SoldOut,
            None,
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    store
        .set_drop_status(
            &DropId::from_trusted("drp_3"),
            DropStatus::Closed,
            Some("seller"),
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    let closed = store
        .drop_by_id(&DropId::from_trusted("drp_3"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(closed.status, DropStatus::Closed);
    assert_eq!(closed.closed_reason.as_deref(), Some("seller"));
    let sold_out = store
        .drop_by_id(&DropId::from_trusted("drp_2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sold_out.status, DropStatus::SoldOut);
    assert_eq!(sold_out.closed_reason, None);

    // A late open ⇄ sold-out write (a status task finishing after the close) never reopens it.
    store
        .set_drop_status(
            &DropId::from_trusted("drp_3"),
            DropStatus::SoldOut,
            None,
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    let still = store
        .drop_by_id(&DropId::from_trusted("drp_3"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still.status, DropStatus::Closed);
    assert_eq!(still.closed_reason.as_deref(), Some("seller"));
}

async fn case_concurrent_batches_never_oversell(store: &SqlStore) {
    let drop = seed_drop(store, "drp_1", 20, 1).await;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..10 {
        let store = store.clone();
        let drop = drop.clone();
        tasks.spawn(async move {
            let batch: Vec<_> = (0..5)
                .map(|i| {
                    claim(
                        &format!("clm_{task}_{i}"),
                        "drp_1",
                        &format!("user-{task}-{i}"),
                        1,
                        "k",
                        T0,
                    )
                })
                .collect();
            store.commit_claims(&drop, &batch, &Fence::Unfenced).await
        });
    }
    let mut committed = 0;
    while let Some(result) = tasks.join_next().await {
        match result.expect("task ran") {
            Ok(()) => committed += 1,
            Err(StorageError::Constraint(message)) => {
                assert!(message.contains("oversold"), "{message}")
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(committed, 4, "exactly 20 units worth of batches fit");
    assert_eq!(counts(store, &drop).await, (20, 0, 0));
    assert_eq!(store.claims_of_drop(&drop).await.unwrap().len(), 20);
}

fn ids(drops: &[Drop]) -> Vec<&str> {
    drops.iter().map(|d| d.id.as_str()).collect()
}

/// Creates drop `id` of `drp_1`'s shape with the given status and end time.
async fn add_drop(store: &SqlStore, id: &str, status: DropStatus, ends_at: Option<i64>) -> DropId {
    let record = Drop {
        ends_at: ends_at.map(Timestamp),
        ..drop_record(id, 5, 2)
    };
    store.create_drop(&record, &Fence::Unfenced).await.unwrap();
    let id = record.id;
    if status != DropStatus::Open {
        store
            .set_drop_status(&id, status, None, &Fence::Unfenced)
            .await
            .unwrap();
    }
    id
}

async fn hold(store: &SqlStore, drop: &DropId, claim_id: &str, expires_at: i64) {
    store
        .commit_claims(
            drop,
            &[claim(
                claim_id,
                drop.as_str(),
                "alice",
                1,
                claim_id,
                expires_at,
            )],
            &Fence::Unfenced,
        )
        .await
        .unwrap();
}

async fn case_drops_to_recover(store: &SqlStore) {
    seed(store).await;
    // Held: open with a hold, and one whose hold expired while nothing ran.
    let held = add_drop(store, "drp_held", DropStatus::Open, None).await;
    hold(store, &held, "clm_held", T0 + 1_000).await;
    let lapsed = add_drop(store, "drp_lapsed", DropStatus::Open, None).await;
    hold(store, &lapsed, "clm_lapsed", T0 - 1_000).await;
    // With an end time, also one already past, and a sold-out one.
    add_drop(store, "drp_ends", DropStatus::Open, Some(T0 + 60_000)).await;
    add_drop(store, "drp_ended", DropStatus::Open, Some(T0 - 60_000)).await;
    add_drop(
        store,
        "drp_sold_out",
        DropStatus::SoldOut,
        Some(T0 + 60_000),
    )
    .await;
    let sold_out_held = add_drop(store, "drp_sold_out_held", DropStatus::Open, None).await;
    hold(store, &sold_out_held, "clm_so", T0 + 1_000).await;
    store
        .set_drop_status(&sold_out_held, DropStatus::SoldOut, None, &Fence::Unfenced)
        .await
        .unwrap();
    // Left out: nothing will happen to them until a request comes.
    add_drop(store, "drp_idle", DropStatus::Open, None).await;
    add_drop(store, "drp_idle_sold_out", DropStatus::SoldOut, None).await;
    let paid = add_drop(store, "drp_paid", DropStatus::Open, None).await;
    hold(store, &paid, "clm_paid", T0 + 1_000).await;
    store
        .mark_claim_paid(&ClaimId::from_trusted("clm_paid"), &Fence::Unfenced)
        .await
        .unwrap()
        .expect("was reserved");
    let expired = add_drop(store, "drp_expired", DropStatus::Open, None).await;
    hold(store, &expired, "clm_expired", T0 + 1_000).await;
    store
        .expire_claims(&expired, Timestamp(T0 + 1_000), &Fence::Unfenced)
        .await
        .unwrap();
    // Left out: closed is final, end time and holds or not.
    add_drop(store, "drp_closed", DropStatus::Closed, Some(T0 + 60_000)).await;
    let closed_held = add_drop(store, "drp_closed_held", DropStatus::Open, None).await;
    hold(store, &closed_held, "clm_closed", T0 + 1_000).await;
    store
        .set_drop_status(
            &closed_held,
            DropStatus::Closed,
            Some("seller"),
            &Fence::Unfenced,
        )
        .await
        .unwrap();

    let recover = store.drops_to_recover().await.unwrap();
    assert_eq!(
        ids(&recover),
        [
            "drp_held",
            "drp_lapsed",
            "drp_ends",
            "drp_ended",
            "drp_sold_out",
            "drp_sold_out_held",
        ]
    );
    let lapsed = recover.iter().find(|d| d.id == lapsed).unwrap();
    assert_eq!((lapsed.reserved, lapsed.remaining), (1, 4));
}

async fn case_live_streams(store: &SqlStore) {
    seed(store).await;
    store
        .create_tenant(&tenant("ten_b", "shop-b"))
        .await
        .unwrap();
    for (tenant, id) in [("ten_a", "str_2"), ("ten_b", "str_3"), ("ten_b", "str_4")] {
        store.create_stream(&stream(tenant, id)).await.unwrap();
    }
    assert!(store.live_streams().await.unwrap().is_empty());
    for id in ["str_4", "str_1", "str_3"] {
        store
            .update_stream_status(
                &StreamId::from_trusted(id),
                StreamStatus::Live,
                Some(Timestamp(T0)),
                None,
                &Fence::Unfenced,
            )
            .await
            .unwrap();
    }
    store
        .update_stream_status(
            &StreamId::from_trusted("str_3"),
            StreamStatus::Ended,
            Some(Timestamp(T0)),
            Some(Timestamp(T0 + 1)),
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    let live = store.live_streams().await.unwrap();
    assert_eq!(
        live.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["str_1", "str_4"],
        "live streams of every tenant, oldest first"
    );
}

fn assert_fenced<T: std::fmt::Debug>(result: Result<T, StorageError>, token: u64) {
    match result {
        Err(StorageError::Fenced { scope, token: t }) => {
            assert_eq!((scope.as_str(), t), ("str_1", token));
        }
        other => panic!("expected the write to be fenced off, got {other:?}"),
    }
}

async fn case_taking_a_fence_refuses_the_previous_owner(store: &SqlStore) {
    let drop = seed_drop(store, "drp_1", 10, 5).await;
    let first = store.take_fence("str_1").await.unwrap();
    assert_eq!(first, 1, "a scope never fenced starts at 1");
    let old = Fence::owner("str_1", first);
    store
        .commit_claims(
            &drop,
            &[claim("clm_1", "drp_1", "alice", 1, "k1", T0)],
            &old,
        )
        .await
        .unwrap();
    // A new owner takes the next token before writing anything: the old owner is refused at once.
    let second = store.take_fence("str_1").await.unwrap();
    assert_eq!(second, 2);
    assert_fenced(
        store
            .commit_claims(&drop, &[claim("clm_2", "drp_1", "bob", 1, "k2", T0)], &old)
            .await,
        1,
    );
    store
        .commit_claims(
            &drop,
            &[claim("clm_3", "drp_1", "carol", 1, "k3", T0)],
            &Fence::owner("str_1", second),
        )
        .await
        .unwrap();
    // A token written by hand above the counter still leaves the next take above it.
    store
        .commit_claims(
            &drop,
            &[claim("clm_4", "drp_1", "dave", 1, "k4", T0)],
            &Fence::owner("str_1", 9),
        )
        .await
        .unwrap();
    assert_eq!(store.fence_of("str_1").await.unwrap(), Some(9));
    assert_eq!(store.take_fence("str_1").await.unwrap(), 10);
    assert_eq!(store.fence_of("str_1").await.unwrap(), Some(10));
    assert_eq!(store.fence_of("str_3").await.unwrap(), None);
    assert_eq!(
        store.take_fence("str_2").await.unwrap(),
        1,
        "scopes count apart"
    );
}

async fn case_stale_owner_is_fenced_off(store: &SqlStore) {
    let drop = seed_drop(store, "drp_1", 10, 5).await;
    let old = Fence::owner("str_1", 7);
    let new = Fence::owner("str_1", 8);
    store
        .commit_claims(
            &drop,
            &[claim("clm_1", "drp_1", "alice", 1, "k1", T0)],
            &old,
        )
        .await
        .unwrap();
    // The owner keeps writing with its token until a newer owner writes.
    store
        .commit_claims(&drop, &[claim("clm_2", "drp_1", "bob", 1, "k1", T0)], &old)
        .await
        .unwrap();
    store
        .commit_claims(
            &drop,
            &[claim("clm_3", "drp_1", "carol", 1, "k1", T0)],
            &new,
        )
        .await
        .unwrap();

    let stale = store
        .commit_claims(&drop, &[claim("clm_4", "drp_1", "dave", 1, "k1", T0)], &old)
        .await;
    assert!(matches!(&stale, Err(e) if !e.is_row_fault()), "{stale:?}");
    assert_fenced(stale, 7);
    assert_eq!(
        counts(store, &drop).await,
        (3, 0, 7),
        "nothing of it written"
    );
    assert!(
        store
            .claim_by_id(&ClaimId::from_trusted("clm_4"))
            .await
            .unwrap()
            .is_none()
    );

    // Unfenced writes are not checked at all, and other scopes have their own tokens.
    store
        .commit_claims(
            &drop,
            &[claim("clm_5", "drp_1", "erin", 1, "k1", T0)],
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    store
        .commit_claims(
            &drop,
            &[claim("clm_6", "drp_1", "frank", 1, "k1", T0)],
            &Fence::owner("str_2", 1),
        )
        .await
        .unwrap();
    // A still newer owner takes over.
    store
        .commit_claims(
            &drop,
            &[claim("clm_7", "drp_1", "gina", 1, "k1", T0)],
            &Fence::owner("str_1", 20),
        )
        .await
        .unwrap();
    assert_fenced(
        store
            .commit_claims(&drop, &[claim("clm_8", "drp_1", "hal", 1, "k1", T0)], &new)
            .await,
        8,
    );
    assert_eq!(counts(store, &drop).await, (6, 0, 4));

    // A token the database cannot hold is refused, not wrapped around.
    let too_big = store
        .commit_claims(
            &drop,
            &[claim("clm_9", "drp_1", "ivan", 1, "k1", T0)],
            &Fence::owner("str_1", u64::MAX),
        )
        .await;
    assert!(
        matches!(too_big, Err(StorageError::Invalid(_))),
        "{too_big:?}"
    );
    assert_eq!(counts(store, &drop).await, (6, 0, 4));
}

async fn case_every_owner_write_is_fenced(store: &SqlStore) {
    let drop = seed_drop(store, "drp_1", 10, 5).await;
    let stream = StreamId::from_trusted("str_1");
    let (old, new) = (Fence::owner("str_1", 1), Fence::owner("str_1", 2));
    hold(store, &drop, "clm_1", T0).await;
    hold(store, &drop, "clm_2", T0).await;
    store
        .set_pinned(&stream, None, &new)
        .await
        .expect("the newer owner writes");

    assert_fenced(
        store.create_drop(&drop_record("drp_2", 5, 1), &old).await,
        1,
    );
    assert_fenced(
        store
            .set_drop_status(&drop, DropStatus::Closed, Some("seller"), &old)
            .await,
        1,
    );
    assert_fenced(store.expire_claims(&drop, Timestamp(T0), &old).await, 1);
    assert_fenced(
        store
            .mark_claim_paid(&ClaimId::from_trusted("clm_1"), &old)
            .await,
        1,
    );
    assert_fenced(
        store
            .update_stream_status(&stream, StreamStatus::Live, Some(Timestamp(T0)), None, &old)
            .await,
        1,
    );
    let product = ProductId::from_trusted("prd_1");
    assert_fenced(store.set_pinned(&stream, Some(&product), &old).await, 1);
    assert_fenced(
        store
            .insert_chat(&[chat("msg_1", "str_1", "late", T0)], &old)
            .await,
        1,
    );

    // Nothing of the stale owner's writes is there.
    assert!(
        store
            .drop_by_id(&DropId::from_trusted("drp_2"))
            .await
            .unwrap()
            .is_none()
    );
    let d = store.drop_by_id(&drop).await.unwrap().unwrap();
    assert_eq!((d.status, d.reserved, d.sold), (DropStatus::Open, 2, 0));
    let s = store.stream(&stream).await.unwrap().unwrap();
    assert_eq!((s.status, s.pinned), (StreamStatus::Scheduled, None));
    assert!(store.recent_chat(&stream, 10).await.unwrap().is_empty());

    // The same writes by the current owner go through.
    store
        .mark_claim_paid(&ClaimId::from_trusted("clm_1"), &new)
        .await
        .unwrap()
        .expect("was reserved");
    assert_eq!(
        store
            .expire_claims(&drop, Timestamp(T0), &new)
            .await
            .unwrap()
            .len(),
        1
    );
    store
        .insert_chat(&[chat("msg_1", "str_1", "hello", T0)], &new)
        .await
        .unwrap();
    store
        .update_stream_status(&stream, StreamStatus::Live, Some(Timestamp(T0)), None, &new)
        .await
        .unwrap();
    store
        .set_pinned(&stream, Some(&product), &new)
        .await
        .unwrap();
    store
        .create_drop(&drop_record("drp_2", 5, 1), &new)
        .await
        .unwrap();
    store
        .set_drop_status(&drop, DropStatus::Closed, Some("seller"), &new)
        .await
        .unwrap();
    let d = store.drop_by_id(&drop).await.unwrap().unwrap();
    assert_eq!((d.status, d.reserved, d.sold), (DropStatus::Closed, 0, 1));
    let s = store.stream(&stream).await.unwrap().unwrap();
    assert_eq!((s.status, s.pinned), (StreamStatus::Live, Some(product)));
    assert_eq!(store.recent_chat(&stream, 10).await.unwrap().len(), 1);
    assert!(
        store
            .drop_by_id(&DropId::from_trusted("drp_2"))
            .await
            .unwrap()
            .is_some()
    );
}

/// The composition root holds an `Arc<dyn Storage>` and hands each part only its aggregate's store.
async fn case_storage_narrows_to_one_aggregate(store: &SqlStore) {
    seed(store).await;
    let storage: Arc<dyn Storage> = Arc::new(store.clone());
    let drops: Arc<dyn DropStore> = storage.clone();
    let streams: Arc<dyn StreamStore> = storage.clone();
    let health: Arc<dyn Health> = storage.clone();
    health.ping().await.unwrap();
    drops
        .create_drop(&drop_record("drp_1", 5, 1), &Fence::Unfenced)
        .await
        .unwrap();
    assert_eq!(
        ids(&storage
            .drops_of_stream(&StreamId::from_trusted("str_1"))
            .await
            .unwrap()),
        ["drp_1"]
    );
    assert!(
        streams
            .stream(&StreamId::from_trusted("str_1"))
            .await
            .unwrap()
            .is_some()
    );
}

// ---- moderation -----------------------------------------------------------------------------

fn entry(
    stream: &str,
    at: i64,
    action: ModerationAction,
    target: &str,
    reason: Option<&str>,
) -> ModerationEntry {
    ModerationEntry {
        stream: StreamId::from_trusted(stream),
        at: Timestamp(at),
        actor: UserId::from_trusted("mod-1"),
        action,
        target: target.to_owned(),
        reason: reason.map(str::to_owned),
    }
}

fn deletion(stream: &str, message: &str, at: i64) -> ModerationEntry {
    entry(stream, at, ModerationAction::DeleteMessage, message, None)
}

fn mute_of(stream: &str, user: &str, until: i64) -> Mute {
    Mute {
        stream: StreamId::from_trusted(stream),
        user: UserId::from_trusted(user),
        until: Timestamp(until),
    }
}

fn ban_of(tenant: &str, user: &str, until: Option<i64>, reason: Option<&str>, at: i64) -> Ban {
    Ban {
        tenant: TenantId::from_trusted(tenant),
        user: UserId::from_trusted(user),
        until: until.map(Timestamp),
        reason: reason.map(str::to_owned),
        by: UserId::from_trusted("mod-1"),
        at: Timestamp(at),
    }
}

fn chat_by(id: &str, stream: &str, user: &str, at: i64) -> ChatMessage {
    let mut message = chat(id, stream, "hi", at);
    message.user.id = UserId::from_trusted(user);
    message
}

fn chat_ids(messages: &[ChatMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.id.as_str()).collect()
}

fn users(bans: &[Ban]) -> Vec<(&str, &str)> {
    bans.iter()
        .map(|b| (b.tenant.as_str(), b.user.as_str()))
        .collect()
}

async fn delete(store: &SqlStore, stream: &str, message: &str, at: i64) {
    store
        .delete_chat(
            &StreamId::from_trusted(stream),
            &ChatId::from_trusted(message),
            &deletion(stream, message, at),
            &Fence::Unfenced,
        )
        .await
        .unwrap();
}

async fn log_of(store: &SqlStore, stream: &str) -> Vec<ModerationEntry> {
    store
        .moderation_log(&StreamId::from_trusted(stream), 100)
        .await
        .unwrap()
}

async fn case_chat_deleted_before_and_after_it_is_written(store: &SqlStore) {
    seed(store).await;
    store
        .create_stream(&stream("ten_a", "str_2"))
        .await
        .unwrap();
    let s1 = StreamId::from_trusted("str_1");
    // Deleted while the message is still in the write-behind queue: no row yet.
    delete(store, "str_1", "msg_2", T0 + 10).await;
    // The same message id in another stream is another message.
    delete(store, "str_2", "msg_0", T0 + 10).await;
    let batch: Vec<_> = (0..5)
        .map(|i| chat(&format!("msg_{i}"), "str_1", &format!("hello {i}"), T0 + i))
        .collect();
    store.insert_chat(&batch, &Fence::Unfenced).await.unwrap();
    assert_eq!(
        chat_ids(&store.recent_chat(&s1, 10).await.unwrap()),
        ["msg_0", "msg_1", "msg_3", "msg_4"],
        "deleted before its row landed"
    );
    // Deleted after its row was written.
    delete(store, "str_1", "msg_3", T0 + 20).await;
    assert_eq!(
        chat_ids(&store.recent_chat(&s1, 10).await.unwrap()),
        ["msg_0", "msg_1", "msg_4"]
    );
    assert_eq!(
        chat_ids(&store.recent_chat(&s1, 2).await.unwrap()),
        ["msg_1", "msg_4"],
        "the limit counts the messages kept, not the deleted ones"
    );

    let message = |id: &str| ChatId::from_trusted(id);
    assert_eq!(
        store.chat_message(&s1, &message("msg_2")).await.unwrap(),
        Some((batch[2].clone(), true))
    );
    assert_eq!(
        store.chat_message(&s1, &message("msg_3")).await.unwrap(),
        Some((batch[3].clone(), true))
    );
    assert_eq!(
        store.chat_message(&s1, &message("msg_0")).await.unwrap(),
        Some((batch[0].clone(), false)),
        "deleted only in str_2"
    );
    assert_eq!(
        store
            .chat_message(&StreamId::from_trusted("str_2"), &message("msg_1"))
            .await
            .unwrap(),
        None,
        "a message of another stream"
    );
    assert_eq!(
        store.chat_message(&s1, &message("msg_9")).await.unwrap(),
        None
    );
    assert_eq!(
        log_of(store, "str_1").await,
        [
            deletion("str_1", "msg_3", T0 + 20),
            deletion("str_1", "msg_2", T0 + 10)
        ]
    );
}

async fn case_chat_deleted_twice(store: &SqlStore) {
    seed(store).await;
    let s1 = StreamId::from_trusted("str_1");
    store
        .insert_chat(
            &[
                chat("msg_1", "str_1", "a", T0),
                chat("msg_2", "str_1", "b", T0 + 1),
            ],
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    delete(store, "str_1", "msg_1", T0 + 10).await;
    delete(store, "str_1", "msg_1", T0 + 20).await;
    assert_eq!(
        chat_ids(&store.recent_chat(&s1, 10).await.unwrap()),
        ["msg_2"]
    );
    assert_eq!(
        log_of(store, "str_1").await,
        [deletion("str_1", "msg_1", T0 + 10)],
        "the second delete changes nothing, not even the log"
    );
}

async fn case_mutes_replace_and_lapse(store: &SqlStore) {
    seed(store).await;
    store
        .create_stream(&stream("ten_a", "str_2"))
        .await
        .unwrap();
    let s1 = StreamId::from_trusted("str_1");
    let mute = |m: &Mute, at: i64| {
        let entry = entry(
            m.stream.as_str(),
            at,
            ModerationAction::Mute,
            m.user.as_str(),
            Some("spam"),
        );
        let m = m.clone();
        async move { store.mute(&m, &entry, &Fence::Unfenced).await.unwrap() }
    };
    assert_eq!(
        store.stream_moderation(&s1, Timestamp(T0)).await.unwrap(),
        StreamModeration::default(),
        "never moderated"
    );
    mute(&mute_of("str_1", "bob", T0 + 60_000), T0).await;
    mute(&mute_of("str_1", "alice", T0 + 30_000), T0).await;
    mute(&mute_of("str_2", "carol", T0 + 60_000), T0).await;
    let s1 = &s1;
    let mutes = |now: i64| async move {
        store
            .stream_moderation(s1, Timestamp(now))
            .await
            .unwrap()
            .mutes
    };
    assert_eq!(
        mutes(T0).await,
        [
            mute_of("str_1", "alice", T0 + 30_000),
            mute_of("str_1", "bob", T0 + 60_000)
        ],
        "this stream's mutes only"
    );
    assert_eq!(
        mutes(T0 + 29_999).await.len(),
        2,
        "a mute holds until its end"
    );
    assert_eq!(
        mutes(T0 + 30_000).await,
        [mute_of("str_1", "bob", T0 + 60_000)],
        "and lapses at it"
    );
    assert!(mutes(T0 + 60_000).await.is_empty());

    // A new mute replaces the earlier one, longer or shorter.
    mute(&mute_of("str_1", "bob", T0 + 120_000), T0 + 1).await;
    assert_eq!(
        mutes(T0 + 90_000).await,
        [mute_of("str_1", "bob", T0 + 120_000)]
    );
    mute(&mute_of("str_1", "bob", T0 + 5_000), T0 + 2).await;
    assert_eq!(mutes(T0).await[1], mute_of("str_1", "bob", T0 + 5_000));
    assert!(mutes(T0 + 90_000).await.is_empty());
    // A lapsed mute can be given again.
    mute(&mute_of("str_1", "alice", T0 + 200_000), T0 + 3).await;
    assert_eq!(
        mutes(T0 + 90_000).await,
        [mute_of("str_1", "alice", T0 + 200_000)]
    );
    assert_eq!(log_of(store, "str_1").await.len(), 5, "each mute logged");
    assert_eq!(log_of(store, "str_2").await.len(), 1);
}

async fn case_chat_settings_round_trip(store: &SqlStore) {
    seed(store).await;
    store
        .create_stream(&stream("ten_a", "str_2"))
        .await
        .unwrap();
    let s1 = StreamId::from_trusted("str_1");
    let settings = ChatSettings {
        slow_mode_seconds: 30,
        blocked_words: [
            "free money",
            "Straße",
            "мошенник",
            "詐欺",
            "احتيال",
            "ΑΠΆΤΗ",
            "धोखा",
            "say \"hi\" \\ now",
        ]
        .map(str::to_owned)
        .to_vec(),
    };
    let changed = entry(
        "str_1",
        T0,
        ModerationAction::ChatSettings,
        "str_1",
        Some("slow_mode_seconds, blocked_words"),
    );
    store
        .set_chat_settings(&s1, &settings, &changed, &Fence::Unfenced)
        .await
        .unwrap();
    let read = store.stream_moderation(&s1, Timestamp(T0)).await.unwrap();
    assert_eq!(read.settings, settings, "words as written, in their order");
    assert!(read.mutes.is_empty());
    assert_eq!(
        store
            .stream_moderation(&StreamId::from_trusted("str_2"), Timestamp(T0))
            .await
            .unwrap()
            .settings,
        ChatSettings::default(),
        "another stream keeps the defaults"
    );

    // Replaced whole, down to the defaults.
    let cleared = ChatSettings::default();
    store
        .set_chat_settings(&s1, &cleared, &changed, &Fence::Unfenced)
        .await
        .unwrap();
    assert_eq!(
        store
            .stream_moderation(&s1, Timestamp(T0))
            .await
            .unwrap()
            .settings,
        cleared
    );
    let many = ChatSettings {
        slow_mode_seconds: 3_600,
        blocked_words: (0..2_000).map(|i| format!("wörd{i}")).collect(),
    };
    store
        .set_chat_settings(&s1, &many, &changed, &Fence::Unfenced)
        .await
        .unwrap();
    assert_eq!(
        store
            .stream_moderation(&s1, Timestamp(T0))
            .await
            .unwrap()
            .settings,
        many
    );
    assert_eq!(log_of(store, "str_1").await, vec![changed; 3]);
}

async fn case_bans_hold_until_they_lapse(store: &SqlStore) {
    seed(store).await;
    let (ta, tb) = (
        TenantId::from_trusted("ten_a"),
        TenantId::from_trusted("ten_b"),
    );
    let forever = ban_of("ten_a", "alice", None, Some("fraud"), T0);
    let brief = ban_of("ten_a", "bob", Some(T0 + 1_000), None, T0 + 10);
    let elsewhere = ban_of("ten_b", "alice", Some(T0 + 5_000), None, T0 + 20);
    for ban in [&forever, &brief, &elsewhere] {
        // No live stream to log in: the ban alone is written.
        store.ban(ban, &[]).await.unwrap();
    }
    assert_eq!(
        store.active_bans(Timestamp(T0 + 999)).await.unwrap(),
        [forever.clone(), brief.clone(), elsewhere.clone()],
        "every tenant's bans that hold"
    );
    assert_eq!(
        users(&store.active_bans(Timestamp(T0 + 1_000)).await.unwrap()),
        [("ten_a", "alice"), ("ten_b", "alice")],
        "bob's ban lapsed at its end"
    );
    assert_eq!(
        store.active_bans(Timestamp(i64::MAX)).await.unwrap(),
        std::slice::from_ref(&forever),
        "no end is for good"
    );
    assert_eq!(
        store
            .bans_of_tenant(&ta, Timestamp(T0 + 999))
            .await
            .unwrap(),
        [brief.clone(), forever.clone()],
        "newest first"
    );
    assert_eq!(
        store
            .bans_of_tenant(&ta, Timestamp(T0 + 1_000))
            .await
            .unwrap(),
        std::slice::from_ref(&forever)
    );
    assert_eq!(
        store.bans_of_tenant(&tb, Timestamp(T0)).await.unwrap(),
        [elsewhere]
    );
    assert!(
        store
            .bans_of_tenant(&TenantId::from_trusted("ten_c"), Timestamp(T0))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn case_rebans_replace_and_unbans(store: &SqlStore) {
    seed(store).await;
    store
        .create_stream(&stream("ten_a", "str_2"))
        .await
        .unwrap();
    let ta = TenantId::from_trusted("ten_a");
    let alice = UserId::from_trusted("alice");
    let in_both = |at: i64, action: ModerationAction, reason: Option<&str>| {
        ["str_1", "str_2"].map(|s| entry(s, at, action, "alice", reason))
    };
    let first = ban_of("ten_a", "alice", Some(T0 + 1_000), Some("spam"), T0);
    store
        .ban(&first, &in_both(T0, ModerationAction::Ban, Some("spam")))
        .await
        .unwrap();
    // A re-ban replaces the earlier one: end, reason, who and when.
    let mut second = ban_of("ten_a", "alice", None, None, T0 + 50);
    second.by = UserId::from_trusted("mod-2");
    store
        .ban(&second, &in_both(T0 + 50, ModerationAction::Ban, None))
        .await
        .unwrap();
    assert_eq!(
        store.bans_of_tenant(&ta, Timestamp(T0)).await.unwrap(),
        [second.clone()]
    );
    assert_eq!(
        store.active_bans(Timestamp(T0 + 2_000)).await.unwrap(),
        [second],
        "the replacing ban holds for good"
    );

    let unban = in_both(T0 + 100, ModerationAction::Unban, None);
    assert!(store.unban(&ta, &alice, &unban).await.unwrap());
    assert!(store.active_bans(Timestamp(T0)).await.unwrap().is_empty());
    assert!(
        !store.unban(&ta, &alice, &unban).await.unwrap(),
        "no ban left to lift"
    );
    assert!(
        !store
            .unban(&ta, &UserId::from_trusted("nobody"), &unban)
            .await
            .unwrap()
    );
    for stream in ["str_1", "str_2"] {
        assert_eq!(
            log_of(store, stream)
                .await
                .iter()
                .map(|e| (e.action, e.at.millis()))
                .collect::<Vec<_>>(),
            [
                (ModerationAction::Unban, T0 + 100),
                (ModerationAction::Ban, T0 + 50),
                (ModerationAction::Ban, T0),
            ],
            "one entry per stream and action; the unbans that lifted nothing are not logged"
        );
    }
    // A lapsed ban is still stored: lifting it answers true.
    store
        .ban(&ban_of("ten_a", "alice", Some(T0 + 1), None, T0), &[])
        .await
        .unwrap();
    assert!(store.unban(&ta, &alice, &[]).await.unwrap());
}

async fn case_moderation_log_newest_first(store: &SqlStore) {
    seed(store).await;
    store
        .create_stream(&stream("ten_a", "str_2"))
        .await
        .unwrap();
    let s1 = StreamId::from_trusted("str_1");
    let muted = entry(
        "str_1",
        T0 + 10,
        ModerationAction::Mute,
        "bob",
        Some("caps lock, all of it 📢"),
    );
    store
        .mute(
            &mute_of("str_1", "bob", T0 + 60_000),
            &muted,
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    delete(store, "str_1", "msg_1", T0 + 20).await;
    // Same instant as the deletion: the later write comes first.
    let banned = entry("str_1", T0 + 20, ModerationAction::Ban, "carol", None);
    store
        .ban(
            &ban_of("ten_a", "carol", None, None, T0 + 20),
            &[
                banned.clone(),
                entry("str_2", T0 + 20, ModerationAction::Ban, "carol", None),
            ],
        )
        .await
        .unwrap();
    // Written later but dated earlier (clocks of two nodes): ordered by time.
    delete(store, "str_1", "msg_0", T0 + 5).await;

    let all = store.moderation_log(&s1, 100).await.unwrap();
    assert_eq!(
        all,
        [
            banned.clone(),
            deletion("str_1", "msg_1", T0 + 20),
            muted.clone(),
            deletion("str_1", "msg_0", T0 + 5),
        ]
    );
    assert_eq!(all[2].reason.as_deref(), Some("caps lock, all of it 📢"));
    assert_eq!(all[0].reason, None);
    assert_eq!(
        store.moderation_log(&s1, 2).await.unwrap(),
        all[..2].to_vec(),
        "the newest `limit`"
    );
    assert!(store.moderation_log(&s1, 0).await.unwrap().is_empty());
    assert_eq!(log_of(store, "str_2").await.len(), 1);
    assert!(log_of(store, "str_9").await.is_empty());
}

async fn case_chatted_with_seller(store: &SqlStore) {
    seed(store).await;
    store
        .create_tenant(&tenant("ten_b", "shop-b"))
        .await
        .unwrap();
    let mut other_seller = stream("ten_a", "str_2");
    other_seller.seller = UserId::from_trusted("seller-2");
    store.create_stream(&other_seller).await.unwrap();
    // The same seller id in another tenant is someone else.
    store
        .create_stream(&stream("ten_b", "str_3"))
        .await
        .unwrap();
    let mut in_b = chat_by("msg_4", "str_3", "dave", T0);
    in_b.tenant = TenantId::from_trusted("ten_b");
    store
        .insert_chat(
            &[
                chat_by("msg_1", "str_1", "alice", T0),
                chat_by("msg_2", "str_2", "bob", T0),
                chat_by("msg_3", "str_1", "carol", T0),
                in_b,
            ],
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    // A deleted message still shows the user chatted there.
    delete(store, "str_1", "msg_3", T0 + 1).await;

    let asks = |tenant: &str, seller: &str, user: &str| {
        let (tenant, seller, user) = (
            TenantId::from_trusted(tenant),
            UserId::from_trusted(seller),
            UserId::from_trusted(user),
        );
        async move {
            store
                .chatted_with_seller(&tenant, &seller, &user)
                .await
                .unwrap()
        }
    };
    assert!(asks("ten_a", "seller-1", "alice").await);
    assert!(asks("ten_a", "seller-1", "carol").await);
    assert!(asks("ten_a", "seller-2", "bob").await);
    assert!(
        !asks("ten_a", "seller-1", "bob").await,
        "another seller's viewer"
    );
    assert!(!asks("ten_a", "seller-2", "alice").await);
    assert!(!asks("ten_a", "seller-1", "erin").await, "never chatted");
    assert!(
        !asks("ten_a", "seller-1", "dave").await,
        "chatted in another tenant"
    );
    assert!(asks("ten_b", "seller-1", "dave").await);
    assert!(!asks("ten_b", "seller-1", "alice").await);
}

async fn case_stale_owner_moderates_nothing(store: &SqlStore) {
    seed(store).await;
    let s1 = StreamId::from_trusted("str_1");
    let message = ChatId::from_trusted("msg_1");
    store
        .insert_chat(&[chat("msg_1", "str_1", "hello", T0)], &Fence::Unfenced)
        .await
        .unwrap();
    let old = Fence::owner("str_1", store.take_fence("str_1").await.unwrap());
    let new = Fence::owner("str_1", store.take_fence("str_1").await.unwrap());
    let mute = mute_of("str_1", "bob", T0 + 60_000);
    let muted = entry("str_1", T0, ModerationAction::Mute, "bob", None);
    let settings = ChatSettings {
        slow_mode_seconds: 10,
        blocked_words: vec!["scam".to_owned()],
    };
    let changed = entry("str_1", T0, ModerationAction::ChatSettings, "str_1", None);
    let deleted = deletion("str_1", "msg_1", T0);

    assert_fenced(store.delete_chat(&s1, &message, &deleted, &old).await, 1);
    assert_fenced(store.mute(&mute, &muted, &old).await, 1);
    assert_fenced(
        store
            .set_chat_settings(&s1, &settings, &changed, &old)
            .await,
        1,
    );
    // Nothing of it is there, not even in the log.
    assert_eq!(
        chat_ids(&store.recent_chat(&s1, 10).await.unwrap()),
        ["msg_1"]
    );
    assert_eq!(
        store
            .chat_message(&s1, &message)
            .await
            .unwrap()
            .map(|(_, d)| d),
        Some(false)
    );
    assert_eq!(
        store.stream_moderation(&s1, Timestamp(T0)).await.unwrap(),
        StreamModeration::default()
    );
    assert!(log_of(store, "str_1").await.is_empty());

    // The current owner's same writes go through.
    store
        .delete_chat(&s1, &message, &deleted, &new)
        .await
        .unwrap();
    store.mute(&mute, &muted, &new).await.unwrap();
    store
        .set_chat_settings(&s1, &settings, &changed, &new)
        .await
        .unwrap();
    assert!(store.recent_chat(&s1, 10).await.unwrap().is_empty());
    assert_eq!(
        store.stream_moderation(&s1, Timestamp(T0)).await.unwrap(),
        StreamModeration {
            settings,
            mutes: vec![mute],
        }
    );
    assert_eq!(log_of(store, "str_1").await.len(), 3);
}
