//! Batches that one row cannot poison, on SQLite and Postgres: a row that storage refuses for
//! itself is set aside by `write_isolating` and the rest of its batch is stored; and any text the
//! validation layer accepts is stored byte for byte on both databases. These tests call the store
//! directly, bypassing validation, as a bug or a new field without a check would.

use std::ops::Range;
use std::sync::Arc;

use liveshop_engine::ids::{ChatId, ClaimId, DropId, ProductId, Slug, StreamId, TenantId, UserId};
use liveshop_engine::records::{
    ChatAuthor, ChatMessage, Claim, ClaimStatus, Drop, DropStatus, Product, Stream, StreamStatus,
    Tenant, UserSeen,
};
use liveshop_engine::storage::{
    CatalogStore, ChatStore, DropStore, Fence, NewClaim, RowOutcome, StorageError, StreamStore,
    TenantStore, write_isolating,
};
use liveshop_engine::text;
use liveshop_engine::timestamp::Timestamp;
use liveshop_storage::testing::fresh_store;
use liveshop_storage::{Backend, SqlStore};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

macro_rules! both {
    ($($name:ident => $case:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_sqlite() {
                    let (db, store) = fresh_store(Backend::Sqlite).await;
                    $case(Arc::new(store.clone())).await;
                    store.close().await;
                    drop(db);
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_postgres() {
                    let (db, store) = fresh_store(Backend::Postgres).await;
                    $case(Arc::new(store.clone())).await;
                    store.close().await;
                    drop(db);
                }
            }
        )*
    };
}

both! {
    nul_text_is_a_refused_value_not_an_outage => case_nul_text_is_refused_or_stored_never_unavailable,
    refused_chat_row_is_set_aside => case_refused_chat_row_is_set_aside,
    refused_claim_is_set_aside => case_refused_claim_is_set_aside,
    refused_user_seen_is_set_aside => case_refused_user_seen_is_set_aside,
    accepted_text_round_trips_byte_identical => case_accepted_text_round_trips,
    one_refused_row_never_costs_the_others => case_one_refused_row_never_costs_the_others,
}

const T0: i64 = 1_795_770_000_000;

async fn seed(store: &SqlStore) {
    store
        .create_tenant(&Tenant {
            id: TenantId::from_trusted("ten_a"),
            slug: Slug::parse("shop-a").unwrap(),
            name: "Shop".to_owned(),
            created_at: Timestamp(T0),
        })
        .await
        .unwrap();
    store
        .create_product(&product("prd_1", "SKU-1", "Tee", None))
        .await
        .unwrap();
    store
        .create_stream(&Stream {
            id: StreamId::from_trusted("str_1"),
            tenant: TenantId::from_trusted("ten_a"),
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
    store
        .create_drop(
            &Drop {
                id: DropId::from_trusted("drp_1"),
                tenant: TenantId::from_trusted("ten_a"),
                stream: StreamId::from_trusted("str_1"),
                product: ProductId::from_trusted("prd_1"),
                quantity: 100,
                remaining: 100,
                reserved: 0,
                sold: 0,
                per_user_limit: 1,
                hold_seconds: 300,
                status: DropStatus::Open,
                opened_at: Timestamp(T0),
                ends_at: None,
                closed_reason: None,
            },
            &Fence::Unfenced,
        )
        .await
        .unwrap();
}

fn product(id: &str, sku: &str, title: &str, image_url: Option<String>) -> Product {
    Product {
        id: ProductId::from_trusted(id),
        tenant: TenantId::from_trusted("ten_a"),
        sku: sku.to_owned(),
        title: title.to_owned(),
        price_cents: 100,
        currency: "EUR".to_owned(),
        image_url,
    }
}

fn chat(id: &str, name: &str, text: &str, at: i64) -> ChatMessage {
    ChatMessage {
        id: ChatId::from_trusted(id),
        stream: StreamId::from_trusted("str_1"),
        tenant: TenantId::from_trusted("ten_a"),
        user: ChatAuthor {
            id: UserId::from_trusted("viewer-1"),
            name: name.to_owned(),
        },
        text: text.to_owned(),
        at: Timestamp(at),
    }
}

fn claim(id: &str, user: &str, key: &str) -> NewClaim {
    NewClaim {
        claim: Claim {
            id: ClaimId::from_trusted(id),
            tenant: TenantId::from_trusted("ten_a"),
            drop: DropId::from_trusted("drp_1"),
            user: UserId::from_trusted(user),
            quantity: 1,
            status: ClaimStatus::Reserved,
            idempotency_key: key.to_owned(),
            created_at: Timestamp(T0),
            expires_at: Timestamp(T0 + 300_000),
        },
    }
}

async fn all_chat(store: &SqlStore) -> Vec<ChatMessage> {
    store
        .recent_chat(&StreamId::from_trusted("str_1"), 10_000)
        .await
        .unwrap()
}

/// Chat batches through the set-aside mechanism, as the persister writes them.
async fn write_chat(store: &Arc<SqlStore>, rows: Vec<ChatMessage>) -> Vec<RowOutcome> {
    let rows = Arc::new(rows);
    let outcome = write_isolating(rows.len(), |range: Range<usize>| {
        let (store, rows) = (store.clone(), rows.clone());
        async move { store.insert_chat(&rows[range], &Fence::Unfenced).await }
    })
    .await;
    assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
    outcome.rows
}

/// The engine's bug was that Postgres refused a NUL byte as if the database were down (503 to a
/// whole batch) while SQLite stored it. A NUL is now either stored (SQLite) or refused as a value
/// of the row (`Invalid`, Postgres), never reported as an outage; the validation layer refuses it
/// before either database sees it.
async fn case_nul_text_is_refused_or_stored_never_unavailable(store: Arc<SqlStore>) {
    seed(&store).await;
    let result = store
        .insert_chat(&[chat("msg_nul", "Eve", "a\0b", T0)], &Fence::Unfenced)
        .await;
    match store.backend() {
        Backend::Postgres => {
            assert!(
                matches!(&result, Err(StorageError::Invalid(_))),
                "{result:?}"
            );
            assert!(result.unwrap_err().is_row_fault());
        }
        Backend::Sqlite => result.unwrap(),
    }
    assert!(text::idempotency_key("key", "a\0b").is_err());
    assert!(text::user_name("Eve\0").is_err());
}

/// The bad row of each backend: a NUL byte (Postgres refuses it), and on both a message whose id
/// is already stored (a unique violation).
fn bad_chat_rows(backend: Backend) -> Vec<ChatMessage> {
    let mut bad = vec![chat("msg_taken", "Mallory", "again", T0 + 50)];
    if backend == Backend::Postgres {
        bad.push(chat("msg_nul_name", "Eve\0", "hi", T0 + 51));
        bad.push(chat("msg_nul_text", "Eve", "h\0i", T0 + 52));
    }
    bad
}

async fn case_refused_chat_row_is_set_aside(store: Arc<SqlStore>) {
    seed(&store).await;
    let taken = chat("msg_taken", "Ann", "first", T0);
    store
        .insert_chat(std::slice::from_ref(&taken), &Fence::Unfenced)
        .await
        .unwrap();
    let good: Vec<_> = (0..20)
        .map(|i| {
            chat(
                &format!("msg_{i:02}"),
                "Ann",
                &format!("hello {i}"),
                T0 + 100 + i,
            )
        })
        .collect();
    let bad = bad_chat_rows(store.backend());
    // Bad rows at the front, in the middle and at the end of the batch.
    let mut batch = good.clone();
    for (n, row) in bad.iter().enumerate() {
        batch.insert([0, 10, batch.len()][n % 3], row.clone());
    }
    let whole = store.insert_chat(&batch, &Fence::Unfenced).await;
    assert!(
        whole.as_ref().is_err_and(StorageError::is_row_fault),
        "{whole:?}"
    );

    let outcomes = write_chat(&store, batch.clone()).await;
    for (row, outcome) in batch.iter().zip(&outcomes) {
        let is_bad = bad.iter().any(|b| b.id == row.id);
        assert_eq!(
            matches!(outcome, RowOutcome::Refused(_)),
            is_bad,
            "{row:?}: {outcome:?}"
        );
    }
    let mut expected = vec![taken];
    expected.extend(good);
    assert_eq!(all_chat(&store).await, expected);
}

async fn case_refused_claim_is_set_aside(store: Arc<SqlStore>) {
    seed(&store).await;
    let drop = DropId::from_trusted("drp_1");
    store
        .commit_claims(
            &drop,
            &[claim("clm_first", "buyer-0", "k0")],
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    let mut batch: Vec<NewClaim> = (1..=9)
        .map(|i| claim(&format!("clm_{i}"), &format!("buyer-{i}"), &format!("k{i}")))
        .collect();
    // buyer-0 again in a one-per-buyer drop: refused by both databases.
    batch.insert(3, claim("clm_again", "buyer-0", "k-again"));
    if store.backend() == Backend::Postgres {
        batch.insert(6, claim("clm_nul", "buyer-x", "k\0"));
    }
    let batch = Arc::new(batch);
    let outcome = write_isolating(batch.len(), |range| {
        let (store, batch, drop) = (store.clone(), batch.clone(), drop.clone());
        async move {
            store
                .commit_claims(&drop, &batch[range], &Fence::Unfenced)
                .await
        }
    })
    .await;
    assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
    let refused: Vec<&str> = outcome
        .refused()
        .map(|(i, _)| batch[i].claim.id.as_str())
        .collect();
    let mut expected_refused = vec!["clm_again"];
    if store.backend() == Backend::Postgres {
        expected_refused.push("clm_nul");
    }
    assert_eq!(refused, expected_refused);

    let stored = store.claims_of_drop(&drop).await.unwrap();
    assert_eq!(stored.len(), 10, "the first claim and the nine honest ones");
    let d = store.drop_by_id(&drop).await.unwrap().unwrap();
    assert_eq!(
        (d.reserved, d.remaining),
        (10, 90),
        "counts moved only for stored claims"
    );
}

async fn case_refused_user_seen_is_set_aside(store: Arc<SqlStore>) {
    seed(&store).await;
    let tenant = TenantId::from_trusted("ten_a");
    let mut users: Vec<UserSeen> = (0..8)
        .map(|i| UserSeen {
            tenant: tenant.clone(),
            id: UserId::from_trusted(format!("u{i}")),
            name: format!("User {i}"),
            role: "viewer".to_owned(),
            last_seen_at: Timestamp(T0),
        })
        .collect();
    // Users seen have no constraint beyond their key (upserted), so only Postgres refuses a row:
    // a NUL byte in a name. SQLite stores it, which is why validation refuses it first.
    if store.backend() == Backend::Postgres {
        users.insert(
            5,
            UserSeen {
                id: UserId::from_trusted("eve"),
                name: "Eve\0".to_owned(),
                ..users[0].clone()
            },
        );
    }
    let users = Arc::new(users);
    let outcome = write_isolating(users.len(), |range| {
        let (store, users) = (store.clone(), users.clone());
        async move { store.record_users_seen(&users[range]).await }
    })
    .await;
    assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
    let stored = store.users_seen(&tenant).await.unwrap();
    let mut ids: Vec<&str> = stored.iter().map(|u| u.id.as_str()).collect();
    let refused: Vec<&str> = outcome
        .refused()
        .map(|(i, _)| users[i].id.as_str())
        .collect();
    if store.backend() == Backend::Postgres {
        assert_eq!(refused, ["eve"]);
    } else {
        assert!(refused.is_empty());
        ids.retain(|id| *id != "eve");
    }
    assert_eq!(ids, ["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"]);
}

/// Text of any characters (controls, bidi, invisible and all), 1 to 40 of them; three times in four
/// printable text of any script (so that about a third of the cases have all three texts accepted), with now and then a character
/// the rules single out (a joiner, a mark, a non-breaking space) mixed in.
fn any_text() -> impl Strategy<Value = String> {
    let anything =
        prop::collection::vec(any::<char>(), 1..40).prop_map(|chars| chars.into_iter().collect());
    let special = prop::sample::select(vec!['\u{200D}', '\u{200E}', '\u{00A0}', '\u{301}', '\n']);
    let printable = (
        "\\PC{1,40}",
        prop::option::of((special, any::<prop::sample::Index>())),
    )
        .prop_map(
            |(text, extra): (String, Option<(char, prop::sample::Index)>)| {
                let mut chars: Vec<char> = text.chars().collect();
                if let Some((c, at)) = extra {
                    chars.insert(at.index(chars.len() + 1), c);
                }
                chars.into_iter().collect::<String>()
            },
        );
    prop_oneof![1 => anything, 3 => printable]
}

/// Runs a property with a modest number of cases (each one writes to the database).
fn check<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    tokio::task::block_in_place(|| runner.run(&strategy, test)).unwrap();
}

async fn case_accepted_text_round_trips(store: Arc<SqlStore>) {
    seed(&store).await;
    let handle = tokio::runtime::Handle::current();
    let n = std::sync::atomic::AtomicU64::new(0);
    check(
        48,
        (any_text(), any_text(), any_text()),
        |(name, body, key)| {
            let (Ok(name), Ok(body), Ok(())) = (
                text::user_name(&name),
                liveshop_engine::chat::validate_chat_text(&body),
                text::idempotency_key("key", &key),
            ) else {
                return Ok(());
            };
            // Ids follow the same rules as keys: the key doubles as the chat author's user id.
            let author = UserId::parse(&key).expect("an accepted key is an accepted id");
            let image_url =
                text::https_url("image_url", &format!("https://cdn.example/{key}")).ok();
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let id = format!("msg_{i}");
            let sku = format!("RT-{i}");
            let product_id = ProductId::from_trusted(format!("prd_rt_{i}"));
            let mut message = chat(&id, &name, &body, T0 + i as i64);
            message.user.id = author.clone();
            let buyer = claim(&format!("clm_rt_{i}"), &format!("buyer-rt-{i}"), &key);
            handle.block_on(async {
                store
                    .insert_chat(&[message], &Fence::Unfenced)
                    .await
                    .unwrap();
                store
                    .create_product(&product(
                        product_id.as_str(),
                        &sku,
                        &name,
                        image_url.clone(),
                    ))
                    .await
                    .unwrap();
                let drop = DropId::from_trusted("drp_1");
                store
                    .commit_claims(&drop, std::slice::from_ref(&buyer), &Fence::Unfenced)
                    .await
                    .unwrap();

                let back = all_chat(&store).await.pop().unwrap();
                prop_assert_eq!(back.text.as_bytes(), body.as_bytes());
                prop_assert_eq!(back.user.name.as_bytes(), name.as_bytes());
                prop_assert_eq!(back.user.id.as_str().as_bytes(), key.as_bytes());
                let tenant = TenantId::from_trusted("ten_a");
                let stored = store.product(&tenant, &product_id).await.unwrap().unwrap();
                prop_assert_eq!(stored.title.as_bytes(), name.as_bytes());
                prop_assert_eq!(stored.image_url, image_url);
                let found = store
                    .claim_by_key(&drop, &buyer.claim.user, &key)
                    .await
                    .unwrap();
                prop_assert_eq!(found.map(|c| c.idempotency_key), Some(key.clone()));
                Ok(())
            })
        },
    );
    assert!(
        n.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "some generated texts were accepted and stored"
    );
}

async fn case_one_refused_row_never_costs_the_others(store: Arc<SqlStore>) {
    seed(&store).await;
    store
        .insert_chat(&[chat("msg_taken", "Ann", "first", T0)], &Fence::Unfenced)
        .await
        .unwrap();
    let handle = tokio::runtime::Handle::current();
    let round = std::sync::atomic::AtomicU64::new(0);
    let bad_kinds = bad_chat_rows(store.backend()).len();
    check(
        12,
        (1_usize..40, any::<prop::sample::Index>(), 0..bad_kinds),
        |(len, at, kind)| {
            let r = round.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let good: Vec<_> = (0..len)
                .map(|i| {
                    chat(
                        &format!("msg_{r}_{i}"),
                        "Ann",
                        "hi",
                        T0 + 1_000 * (r as i64 + 1) + i as i64,
                    )
                })
                .collect();
            let mut batch = good.clone();
            let mut bad = bad_chat_rows(store.backend()).swap_remove(kind);
            bad.id = if bad.id.as_str() == "msg_taken" {
                bad.id
            } else {
                ChatId::from_trusted(format!("msg_{r}_bad"))
            };
            batch.insert(at.index(len + 1), bad);
            handle.block_on(async {
                let before = all_chat(&store).await.len();
                let outcomes = write_chat(&store, batch).await;
                prop_assert_eq!(
                    outcomes
                        .iter()
                        .filter(|o| matches!(o, RowOutcome::Refused(_)))
                        .count(),
                    1
                );
                let after = all_chat(&store).await;
                prop_assert_eq!(after.len(), before + len);
                for row in &good {
                    prop_assert!(after.contains(row));
                }
                Ok(())
            })
        },
    );
}
