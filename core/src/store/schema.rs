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
    ("0006_conflicts.sql", include_str!("../../../migrations/0006_conflicts.sql")),
    ("0007_rejoin.sql", include_str!("../../../migrations/0007_rejoin.sql")),
    ("0008_keyring.sql", include_str!("../../../migrations/0008_keyring.sql")),
    ("0009_compaction.sql", include_str!("../../../migrations/0009_compaction.sql")),
    ("0010_entries_by_modseq.sql", include_str!("../../../migrations/0010_entries_by_modseq.sql")),
    ("0011_blob_spool.sql", include_str!("../../../migrations/0011_blob_spool.sql")),
    ("0012_file_keys.sql", include_str!("../../../migrations/0012_file_keys.sql")),
    ("0013_live_mailboxes_by_user_name.sql", include_str!("../../../migrations/0013_live_mailboxes_by_user_name.sql")),
    ("0014_snapshot_refusals.sql", include_str!("../../../migrations/0014_snapshot_refusals.sql")),
    ("0015_blob_orphans.sql", include_str!("../../../migrations/0015_blob_orphans.sql")),
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
    if found > 0 && found < keyring_version() {
        rebuild_keyring(conn)?;
    }
    Ok(())
}

/// The schema version that adds the keyring (its position in the list; found
/// by name, so renumbering the file keeps this right).
fn keyring_version() -> i64 {
    MIGRATIONS.iter().position(|(name, _)| name.ends_with("_keyring.sql")).map_or(0, |i| i as i64 + 1)
}

/// Fills the keyring (migration 0008) from the event log, as replaying it
/// would: every `user_keys` event applied while its user existed adds its
/// identity (the wraps of the latest stamp win), a removal empties the user's
/// keyring. So an identity that lost the last-writer-wins record before this
/// version (a user created on two devices) is back, and `verify` agrees.
fn rebuild_keyring(conn: &mut Connection) -> StoreResult<()> {
    use crate::log::event::EventOp;
    use crate::store::state;
    let tx = conn.transaction()?;
    {
        let mut stmt =
            tx.prepare("SELECT origin, hlc, payload FROM events WHERE payload LIKE '%\"user_%' ORDER BY applied_idx")?;
        let rows: Vec<(Vec<u8>, i64, Vec<u8>)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
        let mut existing = std::collections::HashSet::new();
        for (origin, hlc, payload) in rows {
            let value: serde_json::Value = serde_json::from_slice(&payload)
                .map_err(|e| StoreError::Corrupt(format!("event payload is not JSON: {e}")))?;
            let Ok(op) = serde_json::from_value::<EventOp>(value["op"].clone()) else { continue };
            let origin = crate::model::DeviceId::from_slice(&origin)
                .ok_or_else(|| StoreError::Corrupt("event origin is not 32 bytes".into()))?;
            let hlc = crate::clock::Hlc::from_raw(hlc as u64);
            match op {
                EventOp::UserAdd { user, .. } => {
                    existing.insert(user.as_str().to_string());
                }
                EventOp::UserRemove { user } => {
                    existing.remove(user.as_str());
                    tx.execute("DELETE FROM user_keyring WHERE user = ?1", [user.as_str()])?;
                }
                EventOp::UserKeys { user, keys, also, .. } if existing.contains(user.as_str()) => {
                    for keys in std::iter::once(&*keys).chain(&also) {
                        state::keyring_put(&tx, user.as_str(), keys, hlc, origin)?;
                    }
                }
                _ => {}
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// A new in-memory database at the latest schema (simulator devices, tests,
/// `verify`'s scratch replay). Copies a per-thread template that was migrated
/// once, with SQLite's backup API: running every migration's SQL again for
/// each of the thousands of stores a simulator soak creates cost more than
/// the runs themselves.
pub(crate) fn migrated_in_memory() -> StoreResult<Connection> {
    thread_local! {
        static TEMPLATE: std::cell::RefCell<Option<Connection>> = const { std::cell::RefCell::new(None) };
    }
    TEMPLATE.with(|cell| {
        let mut template = cell.borrow_mut();
        if template.is_none() {
            let mut conn = Connection::open_in_memory()?;
            migrate(&mut conn, Path::new(":memory:"))?;
            *template = Some(conn);
        }
        let source = template.as_ref().expect("template set above");
        let mut conn = Connection::open_in_memory()?;
        // -1: every page in one step; nothing else writes either database.
        let step = rusqlite::backup::Backup::new(source, &mut conn)?.step(-1)?;
        if step != rusqlite::backup::StepResult::Done {
            return Err(StoreError::Corrupt(format!("copying the schema template stopped early: {step:?}")));
        }
        Ok(conn)
    })
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
    fn the_in_memory_template_is_at_the_latest_schema() {
        let copy = migrated_in_memory().unwrap();
        let mut direct = Connection::open_in_memory().unwrap();
        migrate(&mut direct, Path::new(":memory:")).unwrap();
        let schema = |conn: &Connection| -> Vec<String> {
            let mut stmt = conn.prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name").unwrap();
            stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
        };
        assert_eq!(schema(&copy), schema(&direct));
        let version =
            |conn: &Connection| conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!(version(&copy), MIGRATIONS.len() as i64);
    }

    #[test]
    fn the_keyring_migration_is_found_by_name() {
        assert!(keyring_version() > 7, "the keyring migration is in the list");
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        let err = migrate(&mut conn, Path::new("x.db")).unwrap_err();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }
}
