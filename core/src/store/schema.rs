//! Schema migrations: the numbered files in `migrations/`, embedded in the
//! binary and applied in order at start-up (rusqlite_migration keeps the
//! version in `PRAGMA user_version`).

use std::path::Path;

use rusqlite::Connection;
use rusqlite_migration::{Migrations, M};

use crate::store::{StoreError, StoreResult};

/// The migrations, in order. A test checks this list matches the directory.
pub(crate) const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_initial.sql", include_str!("../../../migrations/0001_initial.sql")),
    ("0002_peers.sql", include_str!("../../../migrations/0002_peers.sql")),
    ("0003_delivery_dedup.sql", include_str!("../../../migrations/0003_delivery_dedup.sql")),
    ("0004_replication.sql", include_str!("../../../migrations/0004_replication.sql")),
    ("0005_encryption.sql", include_str!("../../../migrations/0005_encryption.sql")),
];

/// One extra migration after the real ones, only in packages built for the
/// .deb upgrade test (`packaging/scripts/deb-install-test.sh`): installing such
/// a build over a normal one proves that a package upgrade runs migrations and
/// keeps the data. It lives outside `migrations/` so no release can carry it.
#[cfg(feature = "upgrade-test-migration")]
const UPGRADE_TEST_MIGRATION: Option<&str> = Some(include_str!("../../../packaging/test/upgrade_test_migration.sql"));
#[cfg(not(feature = "upgrade-test-migration"))]
const UPGRADE_TEST_MIGRATION: Option<&str> = None;

/// The SQL of every migration this build applies, in order.
fn migrations_sql() -> Vec<&'static str> {
    MIGRATIONS.iter().map(|(_, sql)| *sql).chain(UPGRADE_TEST_MIGRATION).collect()
}

/// Brings the database to the latest schema, refusing one from a newer build.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> StoreResult<()> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let sql = migrations_sql();
    let supported = sql.len() as i64;
    if found > supported {
        return Err(StoreError::NewerSchema { path: path.to_path_buf(), found, supported });
    }
    let migrations = Migrations::new(sql.into_iter().map(M::up).collect());
    migrations.to_latest(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let embedded: Vec<&str> = MIGRATIONS.iter().map(|(name, _)| *name).collect();
        assert_eq!(files, embedded);
        for (i, name) in embedded.iter().enumerate() {
            assert!(name.starts_with(&format!("{:04}_", i + 1)), "{name} out of sequence");
        }
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        let err = migrate(&mut conn, Path::new("x.db")).unwrap_err();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }
}
