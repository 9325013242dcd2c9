//! What an interrupted `CREATE INDEX CONCURRENTLY` leaves behind (Postgres).
//!
//! A concurrent index build that fails or whose session dies (a node killed mid-deploy) leaves its
//! index in the catalog, marked INVALID: never used by queries, yet still kept up to date by every
//! write. The migration was not recorded, so the next node to start runs it again, and a
//! `CREATE INDEX CONCURRENTLY IF NOT EXISTS` would then skip the INVALID index and record the
//! migration as applied with an index that never serves. Before pending migrations run, under the
//! migration lock (so no other node is building one), such indexes are dropped.

use sqlx::AnyConnection;
use sqlx::{AssertSqlSafe, Executor};

/// Drops every INVALID index of the current schema, logging each. Run only with the migration
/// lock held and migrations pending.
pub(super) async fn drop_invalid_indexes(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    let invalid: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::TEXT FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE NOT i.indisvalid AND n.nspname = current_schema() \
         ORDER BY c.relname",
    )
    .fetch_all(&mut *conn)
    .await?;
    for index in invalid {
        tracing::warn!(
            index = %index,
            "dropping an INVALID index left by an interrupted CREATE INDEX CONCURRENTLY; \
             the pending migration builds it again"
        );
        conn.execute(AssertSqlSafe(format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}",
            quote_identifier(&index)
        )))
        .await?;
    }
    Ok(())
}

/// `name` as a Postgres quoted identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_with_inner_quotes_doubled() {
        assert_eq!(
            quote_identifier("chat_messages_user"),
            "\"chat_messages_user\""
        );
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }
}
