//! Small helpers for building multi-row statements.

use std::fmt::Write as _;

use crate::connect::Backend;

/// The `VALUES` rows of a multi-row INSERT: `($1, $2), ($3, $4)` on Postgres, `(?, ?), (?, ?)` on
/// SQLite, for `rows` rows of `per_row` values each.
///
/// SQLite takes `$1` for a *named* parameter: while it prepares the statement it looks every new
/// name up among those seen so far, and sqlx asks each parameter's name back when it binds. Both
/// grow with the square of the parameter count: a 500-row batch of claims has 4,500 parameters
/// and spent most of its 100–250 ms in those lookups. Anonymous `?` parameters are numbered in
/// order, so a batch costs in proportion to its rows.
pub(crate) fn values_placeholders(backend: Backend, rows: usize, per_row: usize) -> String {
    let mut sql = String::with_capacity(rows * per_row * 5);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 0..per_row {
            if col > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Postgres => {
                    let _ = write!(sql, "${}", row * per_row + col + 1);
                }
                Backend::Sqlite => sql.push('?'),
            }
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_placeholders_across_rows_on_postgres() {
        assert_eq!(
            values_placeholders(Backend::Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(values_placeholders(Backend::Postgres, 1, 1), "($1)");
    }

    #[test]
    fn uses_anonymous_placeholders_on_sqlite() {
        assert_eq!(
            values_placeholders(Backend::Sqlite, 2, 3),
            "(?, ?, ?), (?, ?, ?)"
        );
        assert_eq!(values_placeholders(Backend::Sqlite, 1, 1), "(?)");
    }
}
