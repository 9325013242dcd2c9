//! The actors' batches cannot be poisoned, on SQLite and Postgres: a row that storage refuses is
//! set aside and answered alone, the rest of its batch is stored. These tests drive the real actor
//! tree over a real database but go around the validation of the edges (the engine is called
//! directly, and a second writer changes storage behind a drop actor's back), as a missed check or
//! a new field would.

use std::sync::Arc;

use futures_util::future::join_all;
use liveshop_actors::fanout::Fanout;
use liveshop_actors::{Engine, EngineConfig};
use liveshop_engine::ids::{ChatId, ClaimId, DropId, ProductId, Slug, StreamId, TenantId, UserId};
use liveshop_engine::records::{
    ChatAuthor, ChatMessage, Claim, ClaimStatus, Drop, DropStatus, Product, Stream, StreamStatus,
    Tenant, UserSeen,
};
use liveshop_engine::storage::{
    CatalogStore, ChatStore, DropStore, Fence, NewClaim, StreamStore, TenantStore,
};
use liveshop_engine::{ErrorCode, Timestamp};
use liveshop_storage::testing::fresh_store;
use liveshop_storage::{Backend, SqlStore};

macro_rules! both {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_sqlite() {
                    super::$case(super::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_postgres() {
                    super::$case(super::Backend::Postgres).await;
                }
            }
        )*
    };
}

both! {
    a_claim_storage_refuses_is_answered_alone_and_its_batch_is_stored,
    chat_and_users_seen_that_storage_refuses_never_hold_up_the_rest,
}

const T0: i64 = 1_795_770_000_000;

fn tenant() -> TenantId {
    TenantId::from_trusted("ten_a")
}

async fn seed(store: &SqlStore) {
    store
        .create_tenant(&Tenant {
            id: tenant(),
            slug: Slug::parse("shop-a").unwrap(),
            name: "Shop".to_owned(),
            created_at: Timestamp(T0),
        })
        .await
        .unwrap();
    store
        .create_product(&Product {
            id: ProductId::from_trusted("prd_1"),
            tenant: tenant(),
            sku: "SKU-1".to_owned(),
            title: "Tee".to_owned(),
            price_cents: 100,
            currency: "EUR".to_owned(),
            image_url: None,
        })
        .await
        .unwrap();
    store
        .create_stream(&Stream {
            id: StreamId::from_trusted("str_1"),
            tenant: tenant(),
            seller: UserId::from_trusted("seller-1"),
            title: "Show".to_owned(),
            status: StreamStatus::Live,
            scheduled_at: None,
            started_at: Some(Timestamp(T0)),
            ended_at: None,
            pinned: None,
            viewers: 0,
        })
        .await
        .unwrap();
    let now = liveshop_actors::clock::now();
    store
        .create_drop(
            &Drop {
                id: DropId::from_trusted("drp_1"),
                tenant: tenant(),
                stream: StreamId::from_trusted("str_1"),
                product: ProductId::from_trusted("prd_1"),
                quantity: 100,
                remaining: 100,
                reserved: 0,
                sold: 0,
                per_user_limit: 1,
                hold_seconds: 300,
                status: DropStatus::Open,
                opened_at: now,
                ends_at: None,
                closed_reason: None,
            },
            &Fence::Unfenced,
        )
        .await
        .unwrap();
}

async fn start(backend: Backend) -> (liveshop_storage::testing::TestDb, SqlStore, Engine) {
    let (db, store) = fresh_store(backend).await;
    seed(&store).await;
    let engine = Engine::start(
        Arc::new(store.clone()),
        Fanout::in_process(EngineConfig::default().limits.resume_buffer),
        EngineConfig::default(),
    )
    .await
    .unwrap();
    (db, store, engine)
}

async fn a_claim_storage_refuses_is_answered_alone_and_its_batch_is_stored(backend: Backend) {
    let (db, store, engine) = start(backend).await;
    let drop = DropId::from_trusted("drp_1");
    let buyer = |name: &str| UserId::from_trusted(name);
    // The drop actor starts and builds its book from storage.
    let warm = engine
        .claim(&tenant(), &drop, &buyer("warm"), 1, "k".to_owned())
        .await
        .unwrap();
    assert!(warm.created);
    // A second writer reserves for `sneaky` behind the actor's back: the book lets sneaky claim
    // again, storage refuses it (one unit per buyer: a unique index on Postgres, the holdings
    // limit on SQLite).
    let now = liveshop_actors::clock::now();
    store
        .commit_claims(
            &drop,
            &[NewClaim {
                claim: Claim {
                    id: ClaimId::from_trusted("clm_behind"),
                    tenant: tenant(),
                    drop: drop.clone(),
                    user: buyer("sneaky"),
                    quantity: 1,
                    status: ClaimStatus::Reserved,
                    idempotency_key: "elsewhere".to_owned(),
                    created_at: now,
                    expires_at: now.plus_millis(300_000),
                },
            }],
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    let mut refused_buyers = vec!["sneaky".to_owned()];
    if backend == Backend::Postgres {
        // Postgres cannot store a NUL byte; SQLite can, so there it is an honest claim.
        refused_buyers.push("nul".to_owned());
    }

    let mut buyers: Vec<(String, String)> = (0..20)
        .map(|i| (format!("buyer-{i}"), format!("key-{i}")))
        .collect();
    buyers.insert(7, ("sneaky".to_owned(), "mine".to_owned()));
    buyers.insert(13, ("nul".to_owned(), "k\0".to_owned()));
    let answers = join_all(buyers.iter().map(|(user, key)| {
        let (engine, drop, user, key) = (engine.clone(), drop.clone(), buyer(user), key.clone());
        async move {
            let tenant = tenant();
            engine.claim(&tenant, &drop, &user, 1, key).await
        }
    }))
    .await;
    let mut stored = 2; // warm and the one written behind the actor's back
    for ((user, _), answer) in buyers.iter().zip(answers) {
        if refused_buyers.contains(user) {
            let err = answer.expect_err(user);
            assert_eq!(err.code, ErrorCode::BadRequest, "{user}: {err:?}");
        } else {
            assert!(answer.unwrap_or_else(|e| panic!("{user}: {e:?}")).created);
            stored += 1;
        }
    }
    let d = store.drop_by_id(&drop).await.unwrap().unwrap();
    assert_eq!(d.reserved, stored, "{d:?}");
    assert_eq!(
        store.claims_of_drop(&drop).await.unwrap().len() as i64,
        stored
    );
    // The units of the refused claims went back to the book: the drop still sells them.
    let later = engine
        .claim(&tenant(), &drop, &buyer("later"), 1, "k".to_owned())
        .await
        .unwrap();
    assert!(later.created);
    engine.shutdown().await;
    store.close().await;
    std::mem::drop(db);
}

fn chat(id: &str, name: &str, text: &str, at: i64) -> ChatMessage {
    ChatMessage {
        id: ChatId::from_trusted(id),
        stream: StreamId::from_trusted("str_1"),
        tenant: tenant(),
        user: ChatAuthor {
            id: UserId::from_trusted("viewer-1"),
            name: name.to_owned(),
        },
        text: text.to_owned(),
        at: Timestamp(at),
    }
}

async fn chat_and_users_seen_that_storage_refuses_never_hold_up_the_rest(backend: Backend) {
    let (db, store, engine) = start(backend).await;
    store
        .insert_chat(&[chat("msg_taken", "Ann", "first", T0)], &Fence::Unfenced)
        .await
        .unwrap();
    let mut expected = vec!["first".to_owned()];
    for round in 0..3 {
        for i in 0..10 {
            let text = format!("round {round} message {i}");
            engine.persist_chat(chat(
                &format!("msg_{round}_{i}"),
                "Ann",
                &text,
                T0 + 100 * round + i + 1,
            ));
            expected.push(text);
            if i == 4 {
                // A message whose id is taken: refused by both databases.
                engine.persist_chat(chat("msg_taken", "Mallory", "again", T0 + 100 * round + 50));
                // A NUL byte: refused by Postgres (SQLite stores it, so it is expected there).
                let nul = format!("round {round} \0");
                engine.persist_chat(chat(
                    &format!("msg_{round}_nul"),
                    "Eve",
                    &nul,
                    T0 + 100 * round + 51,
                ));
                if backend == Backend::Sqlite {
                    expected.push(nul);
                }
            }
        }
        // Each round is written by its own flush: a poisoned batch must not block the next.
        engine.flush().await;
    }
    let stored: Vec<String> = store
        .recent_chat(&StreamId::from_trusted("str_1"), 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    let mut want = expected.clone();
    want.sort();
    let mut got = stored.clone();
    got.sort();
    assert_eq!(got, want);

    for (id, name) in [("u1", "One"), ("u2", "Two\0"), ("u3", "Three")] {
        engine.persist_user_seen(UserSeen {
            tenant: tenant(),
            id: UserId::from_trusted(id),
            name: name.to_owned(),
            role: "viewer".to_owned(),
            last_seen_at: Timestamp(T0),
        });
    }
    engine.flush().await;
    let seen: Vec<String> = store
        .users_seen(&tenant())
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id.to_string())
        .collect();
    let want: &[&str] = match backend {
        Backend::Postgres => &["u1", "u3"],
        Backend::Sqlite => &["u1", "u2", "u3"],
    };
    assert_eq!(seen, want);
    engine.shutdown().await;
    store.close().await;
    std::mem::drop(db);
}
