//! Whole-state invariants, checked by `verify`, by the simulator after every
//! step, and by tests. Each query returns the rows that break one invariant.

use rusqlite::Connection;

use crate::store::StoreResult;

const CHECKS: &[(&str, &str)] = &[
    (
        "a UID is both live and a tombstone in the same mailbox",
        "SELECT e.mailbox_id, e.uid FROM mailbox_entries e
         JOIN tombstones t ON t.mailbox_id = e.mailbox_id AND t.uid = e.uid",
    ),
    (
        "an entry is in a deleted or unknown mailbox",
        "SELECT e.entry_id, e.mailbox_id FROM mailbox_entries e
         LEFT JOIN mailboxes m ON m.id = e.mailbox_id WHERE m.id IS NULL OR m.deleted = 1",
    ),
    (
        "an entry's UID is above the mailbox's UID watermark",
        "SELECT e.entry_id, e.uid FROM mailbox_entries e
         JOIN mailbox_local l ON l.mailbox_id = e.mailbox_id WHERE e.uid > l.uid_max",
    ),
    (
        "an entry refers to an unknown message",
        "SELECT e.entry_id, 0 FROM mailbox_entries e LEFT JOIN messages m ON m.blob = e.blob WHERE m.blob IS NULL",
    ),
    (
        "an origin's events are not dense above the log snapshot",
        "SELECT hex(e.origin), COUNT(*) FROM events e LEFT JOIN log_snapshot_vector s ON s.origin = e.origin
         GROUP BY e.origin
         HAVING COUNT(*) != MAX(e.seq) - COALESCE(MAX(s.seq), 0) OR MIN(e.seq) != COALESCE(MAX(s.seq), 0) + 1",
    ),
    (
        "the version vector disagrees with the event log and its snapshot",
        "SELECT hex(v.origin), v.seq FROM version_vector v
         LEFT JOIN (SELECT origin, MAX(seq) AS seq FROM events GROUP BY origin) e ON e.origin = v.origin
         LEFT JOIN log_snapshot_vector s ON s.origin = v.origin
         WHERE COALESCE(e.seq, s.seq) IS NULL OR COALESCE(e.seq, s.seq) != v.seq",
    ),
    (
        "the log snapshot holds events the version vector lacks",
        "SELECT hex(s.origin), s.seq FROM log_snapshot_vector s
         LEFT JOIN version_vector v ON v.origin = s.origin WHERE v.seq IS NULL OR v.seq < s.seq",
    ),
    (
        "a live mailbox has no liveness instance",
        "SELECT m.id, 0 FROM mailboxes m WHERE m.deleted = 0
         AND NOT EXISTS (SELECT 1 FROM mailbox_instances i WHERE i.mailbox_id = m.id)",
    ),
    (
        "a deleted mailbox keeps a liveness instance",
        "SELECT m.id, 0 FROM mailboxes m WHERE m.deleted = 1
         AND EXISTS (SELECT 1 FROM mailbox_instances i WHERE i.mailbox_id = m.id)",
    ),
    (
        "a removed entry is live",
        "SELECT e.entry_id, e.uid FROM mailbox_entries e JOIN removed_entries r ON r.entry_id = e.entry_id",
    ),
    (
        "an extra add names no live entry",
        "SELECT a.entry_id, 0 FROM entry_adds a LEFT JOIN mailbox_entries e ON e.entry_id = a.entry_id
         WHERE e.entry_id IS NULL",
    ),
    (
        "the exposure watermark is above the UID watermark",
        "SELECT mailbox_id, uid_exposed FROM mailbox_local WHERE uid_exposed > uid_max",
    ),
    (
        "a pending event is already applied",
        "SELECT hex(p.origin), p.seq FROM pending_events p JOIN version_vector v ON v.origin = p.origin
         WHERE p.seq <= v.seq",
    ),
    (
        "a mailbox has no local row",
        "SELECT m.id, 0 FROM mailboxes m LEFT JOIN mailbox_local l ON l.mailbox_id = m.id WHERE l.mailbox_id IS NULL",
    ),
];

/// Returns one line per broken invariant (with up to three example rows).
pub(crate) fn check(conn: &Connection) -> StoreResult<Vec<String>> {
    let mut problems = Vec::new();
    for (what, sql) in CHECKS {
        let mut stmt = conn.prepare_cached(sql)?;
        let rows: Vec<String> = stmt
            .query_map([], |r| {
                let a: rusqlite::types::Value = r.get(0)?;
                let b: rusqlite::types::Value = r.get(1)?;
                Ok(format!("{a:?}/{b:?}"))
            })?
            .collect::<Result<_, _>>()?;
        if !rows.is_empty() {
            let examples: Vec<&str> = rows.iter().take(3).map(String::as_str).collect();
            problems.push(format!("{what} ({} rows, e.g. {})", rows.len(), examples.join(", ")));
        }
    }
    Ok(problems)
}
