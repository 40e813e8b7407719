//! The database schema, versioned in the repository (`crates/server/migrations/`)
//! and applied at start by whichever replica comes first: in the caller's
//! transaction, under a transaction-scoped advisory lock (so replicas starting
//! together apply each migration once, one after the other), each recorded in
//! `schema_migrations`. A migration is never edited once released; a change is a
//! new file.

use tokio_postgres::Transaction;

use super::DbError;

/// The advisory lock key of migrations: "wasmhyp1" as a big-endian integer.
const MIGRATION_LOCK: i64 = 0x7761_736d_6879_7031;

/// Every migration, in order: (version, name, SQL).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_init",
        include_str!("../../migrations/0001_init.sql"),
    ),
    (2, "0002_log", include_str!("../../migrations/0002_log.sql")),
    (
        3,
        "0003_async_phase",
        include_str!("../../migrations/0003_async_phase.sql"),
    ),
    (
        4,
        "0004_usage",
        include_str!("../../migrations/0004_usage.sql"),
    ),
    (
        5,
        "0005_witness",
        include_str!("../../migrations/0005_witness.sql"),
    ),
];

/// Applies the migrations `schema_migrations` lacks, within `transaction`.
pub(super) async fn apply(transaction: &Transaction<'_>) -> Result<(), DbError> {
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
                version integer PRIMARY KEY, \
                name text NOT NULL, \
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let applied: Vec<i32> = transaction
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        transaction.batch_execute(sql).await?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await?;
        tracing::info!(version, name, "applied a database migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_in_order_and_named_after_their_file() {
        for (index, (version, name, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version as usize, index + 1);
            assert!(name.starts_with(&format!("{version:04}_")), "{name}");
            assert!(!sql.trim().is_empty());
        }
    }
}
