//! The migration policy, checked over `storage/migrations/{sqlite,postgres}/*.sql`: migrations are
//! expand-only, so a node of the previous release keeps working on a migrated database (a rolling
//! deploy, a rollback; docs/OPERATIONS.md "Schema migrations and rolling deploys").
//!
//! A statement that removes or changes what the previous release may use (DROP, RENAME, a column
//! type, SET NOT NULL, a NOT NULL column without DEFAULT), that tightens what it may write (a new
//! constraint or unique index on an existing table), that rewrites data (UPDATE, DELETE), or that
//! blocks a serving node's writes (on Postgres, an index on an existing table built without
//! CONCURRENTLY) makes its migration a contract migration: refused unless listed in [`CONTRACT`]
//! with the reason it is safe. Both dialects hold the same versions except those in
//! [`ONE_DIALECT_ONLY`], and docs/OPERATIONS.md classifies every migration as this test does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Contract migrations that shipped anyway: (dialect, file stem, date, why). Each must still
/// exist and still be a contract migration.
const CONTRACT: &[(&str, &str, &str, &str)] = &[
    (
        "postgres",
        "20261127000000_claims_without_drop_keys",
        "2026-11-27",
        "contract migration of a release before rolling deploys were supported: drops the foreign \
         keys of claims and holdings to drops; it only relaxes, so the previous release still works",
    ),
    (
        "postgres",
        "20261127000001_one_per_buyer",
        "2026-11-27",
        "contract migration of a release before rolling deploys were supported: backfills the new \
         column (UPDATE), adds a CHECK on it, builds a unique index on claims without CONCURRENTLY \
         (claim writes wait for the build); the previous release still works, as it leaves the new \
         column FALSE",
    ),
    (
        "postgres",
        "20261127000002_claims_keyed_by_id",
        "2026-11-27",
        "contract migration of a release before rolling deploys were supported: replaces the \
         primary key of claims (seq by id) under an exclusive lock; the previous release still \
         works (id stays unique)",
    ),
    (
        "postgres",
        "20261127000003_claims_buyer_first",
        "2026-11-27",
        "contract migration of a release before rolling deploys were supported: rebuilds the \
         idempotency unique constraint with its columns reordered and drops claims_tenant_user; the \
         previous release still works (same unique column set), its claim listing reads another \
         index",
    ),
    (
        "postgres",
        "20261201000000_fences_and_recovery",
        "2026-12-06",
        "contract migration of a release before rolling deploys were supported: builds two \
         partial indexes on streams and drops without CONCURRENTLY (writes to them wait for the \
         build); otherwise additive",
    ),
];

/// Versions only one dialect has: (dialect that has it, file stem, why).
const ONE_DIALECT_ONLY: &[(&str, &str, &str)] = &[
    (
        "postgres",
        "20261127000000_claims_without_drop_keys",
        "Postgres-only tuning of the claim group commit; SQLite keeps its foreign keys (cheap there)",
    ),
    (
        "postgres",
        "20261127000002_claims_keyed_by_id",
        "Postgres-only tuning of the claim group commit; SQLite keeps its rowid key",
    ),
    (
        "postgres",
        "20261127000003_claims_buyer_first",
        "Postgres-only tuning of the claim group commit; SQLite keeps its indexes",
    ),
];

const DIALECTS: [&str; 2] = ["postgres", "sqlite"];

/// One migration file.
struct MigrationFile {
    dialect: &'static str,
    stem: String,
    version: String,
    text: String,
}

fn migrations_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations")
}

fn read_migrations() -> Vec<MigrationFile> {
    let mut files = Vec::new();
    for dialect in DIALECTS {
        let dir = migrations_dir().join(dialect);
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .collect();
        paths.sort();
        for path in paths {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("UTF-8 file name")
                .to_owned();
            let stem = name
                .strip_suffix(".sql")
                .unwrap_or_else(|| panic!("{dialect}/{name}: only .sql files belong here"))
                .to_owned();
            let (version, description) = stem
                .split_once('_')
                .unwrap_or_else(|| panic!("{dialect}/{name}: expected VERSION_description.sql"));
            assert!(
                version.len() == 14 && version.bytes().all(|b| b.is_ascii_digit()),
                "{dialect}/{name}: the version is a UTC timestamp YYYYMMDDhhmmss"
            );
            assert!(
                !description.is_empty()
                    && description
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{dialect}/{name}: the description is lower_snake_case"
            );
            assert!(
                !name.contains(".down.") && !name.contains(".up."),
                "{dialect}/{name}: no reversible (up/down) migrations: never migrate down"
            );
            files.push(MigrationFile {
                dialect,
                version: version.to_owned(),
                text: std::fs::read_to_string(&path).expect("migration is UTF-8"),
                stem,
            });
        }
    }
    files
}

// ---- the checker -------------------------------------------------------------------------------

/// The statements of a SQL script: comments removed, whitespace collapsed, upper-cased outside
/// quotes, `(`, `)` and `,` as tokens of their own; split at `;` outside quotes.
fn statements(sql: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut tokens: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut chars = sql.chars().peekable();
    let flush = |word: &mut String, tokens: &mut Vec<String>| {
        if !word.is_empty() {
            tokens.push(std::mem::take(word));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                flush(&mut word, &mut tokens);
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                flush(&mut word, &mut tokens);
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '\'' | '"' => {
                // A quoted literal or identifier stays one token, as written.
                let mut quoted = String::from(c);
                for q in chars.by_ref() {
                    quoted.push(q);
                    if q == c {
                        break;
                    }
                }
                word.push_str(&quoted);
            }
            ';' => {
                flush(&mut word, &mut tokens);
                if !tokens.is_empty() {
                    out.push(std::mem::take(&mut tokens));
                }
            }
            '(' | ')' | ',' => {
                flush(&mut word, &mut tokens);
                tokens.push(c.to_string());
            }
            c if c.is_whitespace() => flush(&mut word, &mut tokens),
            c => word.extend(c.to_uppercase()),
        }
    }
    flush(&mut word, &mut tokens);
    if !tokens.is_empty() {
        out.push(tokens);
    }
    out
}

fn has(tokens: &[String], word: &str) -> bool {
    tokens.iter().any(|t| t == word)
}

fn has_seq(tokens: &[String], seq: &[&str]) -> bool {
    tokens
        .windows(seq.len())
        .any(|w| w.iter().zip(seq).all(|(a, b)| a == b))
}

/// The token after `keywords` (skipping `IF NOT EXISTS`, `IF EXISTS`, `ONLY`), unquoted.
fn name_after(tokens: &[String], keywords: &[&str]) -> Option<String> {
    let start = tokens
        .windows(keywords.len())
        .position(|w| w.iter().zip(keywords).all(|(a, b)| a == b))?
        + keywords.len();
    let mut rest = tokens[start..].iter().map(String::as_str).peekable();
    loop {
        match rest.peek() {
            Some(&"IF") => {
                rest.next();
                while matches!(rest.peek(), Some(&"NOT") | Some(&"EXISTS")) {
                    rest.next();
                }
            }
            Some(&"ONLY") => {
                rest.next();
            }
            _ => break,
        }
    }
    rest.next()
        .map(|n| n.trim_matches('"').to_ascii_uppercase())
}

/// Splits `ALTER TABLE t a, b, c` into its actions at commas outside parentheses.
fn actions(tokens: &[String]) -> Vec<&[String]> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, t) in tokens.iter().enumerate() {
        match t.as_str() {
            "(" => depth += 1,
            ")" => depth = depth.saturating_sub(1),
            "," if depth == 0 => {
                out.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&tokens[start..]);
    out
}

/// What makes a migration a contract migration (empty: expand-only), one line per finding.
fn contract_findings(dialect: &str, sql: &str) -> Vec<String> {
    let no_transaction = sql.trim_start().starts_with("-- no-transaction");
    let statements = statements(sql);
    let created: BTreeSet<String> = statements
        .iter()
        .filter(|s| s.first().map(String::as_str) == Some("CREATE") && has(s, "TABLE"))
        .filter_map(|s| name_after(s, &["TABLE"]))
        .collect();
    let is_new = |table: &Option<String>| table.as_ref().is_some_and(|t| created.contains(t));
    let mut findings = Vec::new();
    let mut altered = BTreeSet::new();
    for s in &statements {
        let text = s.join(" ");
        let first = s[0].as_str();
        let mut flag = |why: &str| findings.push(format!("{why}: {text}"));
        if has(s, "RENAME") {
            flag("renames what the previous release uses by its old name");
        }
        match first {
            "DROP" => flag("drops what the previous release may still use"),
            "DELETE" | "TRUNCATE" => flag("deletes rows the previous release may still read"),
            "UPDATE" => flag("rewrites rows (a backfill) while nodes write them"),
            "LOCK" | "CLUSTER" | "VACUUM" => flag("locks or rewrites a whole table"),
            "REINDEX" if !has(s, "CONCURRENTLY") => flag("locks or rewrites a whole table"),
            "CREATE" if has_seq(s, &["OR", "REPLACE"]) => {
                flag("replaces a definition the previous release relies on")
            }
            "CREATE" if has(s, "INDEX") => {
                let table = name_after(s, &["ON"]);
                if has(s, "UNIQUE") && !is_new(&table) {
                    flag(
                        "a unique index on an existing table refuses writes the previous release may make",
                    );
                }
                if dialect == "postgres" {
                    if !has(s, "CONCURRENTLY") && !is_new(&table) {
                        flag(
                            "builds an index on an existing table without CONCURRENTLY: writes wait for the build",
                        );
                    }
                    if has(s, "CONCURRENTLY") && !(no_transaction && statements.len() == 1) {
                        flag(
                            "CREATE INDEX CONCURRENTLY must be alone in a file whose first line is `-- no-transaction`",
                        );
                    }
                }
            }
            "ALTER" if s.get(1).map(String::as_str) == Some("TABLE") => {
                let table = name_after(s, &["ALTER", "TABLE"]);
                if is_new(&table) {
                    continue;
                }
                altered.extend(table.clone());
                // Skip `ALTER TABLE [IF EXISTS] [ONLY] name`.
                let mut at = 2;
                while matches!(
                    s.get(at).map(String::as_str),
                    Some("IF" | "EXISTS" | "ONLY")
                ) {
                    at += 1;
                }
                for action in actions(&s[at + 1..]) {
                    let action_text = action.join(" ");
                    let mut flag =
                        |why: &str| findings.push(format!("{why}: {action_text} (in {text})"));
                    if has(action, "DROP") {
                        flag(
                            "drops a column, constraint, default or NOT NULL the previous release relies on",
                        );
                    }
                    if has(action, "TYPE") && has(action, "ALTER") {
                        flag("changes a column's type (and rewrites the table)");
                    }
                    if has_seq(action, &["SET", "NOT", "NULL"]) {
                        flag(
                            "SET NOT NULL refuses rows the previous release writes without the column",
                        );
                    }
                    if has_seq(action, &["SET", "LOGGED"]) || has_seq(action, &["SET", "UNLOGGED"])
                    {
                        flag("rewrites the table");
                    }
                    if action.first().map(String::as_str) == Some("ADD") {
                        let second = action.get(1).map(String::as_str);
                        let tightens = matches!(
                            second,
                            Some(
                                "CONSTRAINT"
                                    | "CHECK"
                                    | "UNIQUE"
                                    | "PRIMARY"
                                    | "FOREIGN"
                                    | "EXCLUDE"
                            )
                        );
                        if tightens {
                            flag(
                                "a new constraint on an existing table refuses writes the previous release may make",
                            );
                        } else {
                            if has_seq(action, &["NOT", "NULL"]) && !has(action, "DEFAULT") {
                                flag(
                                    "a NOT NULL column without DEFAULT refuses the previous release's inserts",
                                );
                            }
                            if has(action, "GENERATED")
                                || has(action, "PRIMARY")
                                || has(action, "UNIQUE")
                            {
                                flag(
                                    "a generated, key or unique column rewrites or locks the table",
                                );
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if altered.len() > 1 {
        findings.push(format!(
            "alters {} existing tables in one transaction ({}): with traffic on, a migration \
             holding one table's lock while it waits for another's deadlocks with the nodes' own \
             transactions; one existing table per migration",
            altered.len(),
            altered.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    findings
}

// ---- the policy --------------------------------------------------------------------------------

#[test]
fn every_migration_is_expand_only_or_a_listed_contract_migration() {
    let files = read_migrations();
    let listed: BTreeMap<(&str, &str), &str> = CONTRACT
        .iter()
        .map(|(dialect, stem, date, why)| {
            assert!(
                date.len() == 10 && why.len() > 40,
                "{dialect}/{stem}: give the date it shipped and why it is acceptable"
            );
            ((*dialect, *stem), *why)
        })
        .collect();
    let mut unlisted = Vec::new();
    for file in &files {
        let findings = contract_findings(file.dialect, &file.text);
        let key = (file.dialect, file.stem.as_str());
        match (findings.is_empty(), listed.contains_key(&key)) {
            (true, true) => unlisted.push(format!(
                "{}/{}.sql is listed in CONTRACT but is expand-only now: remove it from the list",
                file.dialect, file.stem
            )),
            (false, false) => unlisted.push(format!(
                "{}/{}.sql is a contract migration:\n    {}",
                file.dialect,
                file.stem,
                findings.join("\n    ")
            )),
            _ => {}
        }
    }
    for (dialect, stem) in listed.keys() {
        assert!(
            files
                .iter()
                .any(|f| f.dialect == *dialect && f.stem == *stem),
            "CONTRACT lists {dialect}/{stem}.sql, which does not exist"
        );
    }
    assert!(
        unlisted.is_empty(),
        "{}\n\nA rolling deploy runs the previous release on the migrated database, so a \
         migration may only add (tables, nullable or defaulted columns, indexes built \
         CONCURRENTLY on Postgres). Split the change: expand now, and contract one release after \
         the code stopped using what goes (docs/OPERATIONS.md, \"Schema migrations and rolling \
         deploys\").",
        unlisted.join("\n")
    );
}

#[test]
fn both_dialects_hold_the_same_versions_except_the_listed_ones() {
    let files = read_migrations();
    let mut by_dialect: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for file in &files {
        by_dialect
            .entry(file.dialect)
            .or_default()
            .insert(file.version.clone(), file.stem.clone());
    }
    let empty = BTreeMap::new();
    let postgres = by_dialect.get("postgres").unwrap_or(&empty);
    let sqlite = by_dialect.get("sqlite").unwrap_or(&empty);
    let mut problems = Vec::new();
    for (dialect, mine, theirs) in [("postgres", postgres, sqlite), ("sqlite", sqlite, postgres)] {
        for (version, stem) in mine {
            match theirs.get(version) {
                Some(other) if other != stem => problems.push(format!(
                    "version {version} is {dialect}/{stem}.sql but {other}.sql in the other dialect"
                )),
                Some(_) => {}
                None if ONE_DIALECT_ONLY
                    .iter()
                    .any(|(d, s, _)| *d == dialect && s == stem) => {}
                None => problems.push(format!(
                    "{dialect}/{stem}.sql has no counterpart: add one (a comment-only file keeps the \
                     versions paired) or list it in ONE_DIALECT_ONLY with the reason"
                )),
            }
        }
    }
    for (dialect, stem, _) in ONE_DIALECT_ONLY {
        let version = stem.split('_').next().unwrap_or_default();
        let here = by_dialect
            .get(dialect)
            .is_some_and(|m| m.contains_key(version));
        let other = DIALECTS
            .iter()
            .find(|d| *d != dialect)
            .expect("two dialects");
        let there = by_dialect
            .get(other)
            .is_some_and(|m| m.contains_key(version));
        if !here || there {
            problems.push(format!(
                "ONE_DIALECT_ONLY lists {dialect}/{stem}.sql, but it is not in {dialect} only"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn operations_doc_classifies_every_migration_as_this_test_does() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/OPERATIONS.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/OPERATIONS.md");
    let listed: BTreeSet<(&str, &str)> = CONTRACT.iter().map(|(d, s, _, _)| (*d, *s)).collect();
    let mut problems = Vec::new();
    for file in read_migrations() {
        let kind = if listed.contains(&(file.dialect, file.stem.as_str())) {
            "contract"
        } else {
            "expand"
        };
        let row = doc.lines().find(|line| {
            line.starts_with('|')
                && line.contains(&format!("`{}`", file.stem))
                && line.contains(file.dialect)
        });
        match row {
            None => problems.push(format!(
                "docs/OPERATIONS.md has no table row for {}/{}.sql (a `| `{}` | {} | {kind} | ... |` line)",
                file.dialect, file.stem, file.stem, file.dialect
            )),
            Some(line) if !line.contains(&format!("| {kind} |")) => problems.push(format!(
                "docs/OPERATIONS.md does not call {}/{}.sql {kind}: {line}",
                file.dialect, file.stem
            )),
            Some(_) => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---- the checker itself ------------------------------------------------------------------------

#[test]
fn additive_statements_pass() {
    let sql = "
        -- a comment; with a semicolon and DROP TABLE inside
        CREATE TABLE widgets (id TEXT NOT NULL PRIMARY KEY, n BIGINT NOT NULL, UNIQUE (n));
        CREATE INDEX widgets_n ON widgets (n);
        CREATE UNIQUE INDEX widgets_id ON widgets (id);
        ALTER TABLE widgets ADD CONSTRAINT widgets_n_positive CHECK (n > 0);
        ALTER TABLE streams ADD COLUMN note TEXT;
        ALTER TABLE streams ADD COLUMN flag BOOLEAN NOT NULL DEFAULT FALSE, ADD COLUMN x TEXT;
        INSERT INTO widgets (id, n) VALUES ('drop table x;', 1);
        /* DROP INDEX in a block comment */
    ";
    for dialect in DIALECTS {
        assert_eq!(
            contract_findings(dialect, sql),
            Vec::<String>::new(),
            "{dialect}"
        );
    }
    let concurrent = "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS s ON streams (x);";
    assert!(contract_findings("postgres", concurrent).is_empty());
}

#[test]
fn altering_two_existing_tables_in_one_migration_is_caught() {
    let two = "ALTER TABLE streams ADD COLUMN a TEXT;\nALTER TABLE claims ADD COLUMN b TEXT;";
    let findings = contract_findings("postgres", two);
    assert!(
        findings
            .iter()
            .any(|f| f.contains("alters 2 existing tables")),
        "{findings:?}"
    );
    let one = "ALTER TABLE streams ADD COLUMN a TEXT;\nALTER TABLE streams ADD COLUMN b TEXT;";
    assert!(contract_findings("postgres", one).is_empty());
}

#[test]
fn each_contract_statement_is_caught() {
    let cases: &[(&str, &str)] = &[
        ("DROP TABLE streams", "drops"),
        ("DROP INDEX CONCURRENTLY streams_live", "drops"),
        ("ALTER TABLE streams DROP COLUMN epoch", "drops a column"),
        (
            "ALTER TABLE claims DROP CONSTRAINT claims_pkey",
            "drops a column",
        ),
        (
            "ALTER TABLE streams ALTER COLUMN title DROP DEFAULT",
            "drops a column",
        ),
        (
            "ALTER TABLE streams ALTER COLUMN title DROP NOT NULL",
            "drops a column",
        ),
        ("ALTER TABLE streams RENAME COLUMN title TO name", "renames"),
        ("ALTER TABLE streams RENAME TO shows", "renames"),
        ("ALTER INDEX streams_live RENAME TO live", "renames"),
        (
            "ALTER TABLE streams ALTER COLUMN epoch TYPE INTEGER",
            "type",
        ),
        (
            "ALTER TABLE streams ALTER COLUMN epoch SET DATA TYPE INTEGER",
            "type",
        ),
        (
            "ALTER TABLE streams ALTER COLUMN title SET NOT NULL",
            "SET NOT NULL",
        ),
        (
            "ALTER TABLE streams ADD COLUMN note TEXT NOT NULL",
            "without DEFAULT",
        ),
        (
            "ALTER TABLE ONLY streams ADD COLUMN x TEXT, ADD n BIGINT NOT NULL",
            "without DEFAULT",
        ),
        (
            "ALTER TABLE streams ADD CONSTRAINT c CHECK (epoch >= 0)",
            "new constraint",
        ),
        (
            "ALTER TABLE streams ADD CHECK (epoch >= 0) NOT VALID",
            "new constraint",
        ),
        ("ALTER TABLE claims ADD PRIMARY KEY (id)", "new constraint"),
        (
            "ALTER TABLE streams ADD COLUMN n BIGINT GENERATED ALWAYS AS IDENTITY",
            "generated",
        ),
        ("ALTER TABLE streams SET UNLOGGED", "rewrites the table"),
        ("CREATE UNIQUE INDEX s ON streams (title)", "unique index"),
        ("UPDATE claims SET one_per_buyer = TRUE", "backfill"),
        ("DELETE FROM claims", "deletes"),
        ("TRUNCATE claims", "deletes"),
        ("CREATE OR REPLACE VIEW v AS SELECT 1", "replaces"),
        ("VACUUM FULL claims", "whole table"),
        ("REINDEX TABLE claims", "whole table"),
    ];
    for (sql, why) in cases {
        for dialect in DIALECTS {
            let findings = contract_findings(dialect, sql);
            assert!(
                findings.iter().any(|f| f.contains(why)),
                "{dialect}: {sql:?} should be caught ({why}); got {findings:?}"
            );
        }
    }
}

#[test]
fn postgres_indexes_on_existing_tables_are_built_concurrently_alone() {
    let blocking = "CREATE INDEX s ON streams (title);";
    assert!(contract_findings("postgres", blocking)[0].contains("without CONCURRENTLY"));
    // SQLite has one node: nothing serves while it migrates.
    assert!(contract_findings("sqlite", blocking).is_empty());
    let in_transaction = "CREATE INDEX CONCURRENTLY s ON streams (title);";
    assert!(contract_findings("postgres", in_transaction)[0].contains("no-transaction"));
    let with_another = "-- no-transaction\nCREATE INDEX CONCURRENTLY s ON streams (title);\n\
                        CREATE TABLE t (id TEXT);";
    assert!(contract_findings("postgres", with_another)[0].contains("alone"));
}
