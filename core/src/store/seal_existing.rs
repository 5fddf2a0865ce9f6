//! Sealing mail stored in clear (issue 8, upgrade): messages stored while
//! `encryption` was off, or by a version before encryption existed, are
//! plaintext blob files. With encryption on, `roost serve` calls
//! [`Store::seal_existing`] at start-up, which seals each of them **in
//! place**: the file keeps its name (the BLAKE3 of the plaintext, which
//! signed, replicated events name, so no event changes and peers still find
//! it) and its bytes become an age file sealed to every user whose mail it
//! is. docs/security.md says what this keeps visible.
//!
//! Crash-safe and restartable: the `sealed_blobs` rows (per-user dedup) are
//! committed first (they are true of the blob in clear or sealed), then each
//! sealed file is fsynced and renamed over the plaintext one, and the
//! directory fsynced ([`BlobStore::replace_sealed`]). A crash leaves each
//! file whole, in clear or sealed; the next start finds the ones still in
//! clear by their first bytes and seals them.
//!
//! A blob that cannot be sealed is left in clear and reported with the
//! reason: one of its users has no key (created before encryption, until
//! `roost user passwd` creates it), or no mailbox of an existing user names
//! it.

use std::collections::{BTreeSet, HashMap, HashSet};

use rusqlite::OptionalExtension;

use crate::crypto::{Sealer, UserKeys};
use crate::model::BlobHash;
use crate::store::{Store, StoreError, StoreResult};

/// Blobs sealed per batch: one SQLite commit and one round of fsyncs each.
const SEAL_BATCH_LEN: usize = 64;

/// What [`Store::seal_existing`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SealReport {
    /// Blobs found in clear.
    pub found_in_clear: usize,
    /// Of those, blobs now sealed.
    pub sealed: usize,
    /// Blobs left in clear, with the reason.
    pub left_in_clear: Vec<(BlobHash, String)>,
}

impl Store {
    /// Seals every blob still in clear to the users whose mail it is (see the
    /// module doc). Does nothing when encryption is off.
    pub fn seal_existing(&self) -> StoreResult<SealReport> {
        let mut report = SealReport::default();
        if !self.encryption() {
            return Ok(report);
        }
        let in_clear: Vec<BlobHash> =
            self.blobs.list()?.into_iter().filter(|(_, sealed)| !sealed).map(|(hash, _)| hash).collect();
        report.found_in_clear = in_clear.len();
        if in_clear.is_empty() {
            return Ok(report);
        }
        let owners = self.blob_owners(&in_clear)?;
        let keys = self.keys_by_user()?;
        let mut batch = Vec::with_capacity(SEAL_BATCH_LEN);
        for blob in in_clear {
            match sealers_for(owners.get(&blob), &keys) {
                Ok(sealers) => batch.push((blob, sealers)),
                Err(reason) => report.left_in_clear.push((blob, reason)),
            }
            if batch.len() == SEAL_BATCH_LEN {
                report.sealed += self.seal_batch(std::mem::take(&mut batch))?;
            }
        }
        report.sealed += self.seal_batch(batch)?;
        Ok(report)
    }

    /// Seals one batch: dedup rows committed, then the files replaced.
    fn seal_batch(&self, batch: Vec<(BlobHash, Vec<(String, Sealer)>)>) -> StoreResult<usize> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut replacements = Vec::with_capacity(batch.len());
        let tx = self.conn.unchecked_transaction()?;
        for (blob, sealers) in &batch {
            let plain = self.blobs.get(blob)?;
            for (user, sealer) in sealers {
                crate::store::state::sealed_blob_put(&tx, user, &sealer.content_hash(&plain), *blob)?;
            }
            let refs: Vec<&Sealer> = sealers.iter().map(|(_, s)| s).collect();
            replacements.push((*blob, Sealer::seal_to_all(&refs, &plain)?));
        }
        tx.commit()?;
        let n = replacements.len();
        self.blobs.replace_sealed(replacements)?;
        Ok(n)
    }

    /// The users whose mailboxes name each blob: live entries first; for a
    /// blob no entry names any more (expunged, its mailbox deleted), the
    /// events that stored it, since a peer may still fetch it to apply them.
    fn blob_owners(&self, wanted: &[BlobHash]) -> StoreResult<HashMap<BlobHash, BTreeSet<String>>> {
        let wanted: HashSet<BlobHash> = wanted.iter().copied().collect();
        let mut owners: HashMap<BlobHash, BTreeSet<String>> = HashMap::new();
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT e.blob, m.user FROM mailbox_entries e JOIN mailboxes m ON m.id = e.mailbox_id")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let blob = blob_column(&row.get::<_, Vec<u8>>(0)?)?;
            if wanted.contains(&blob) {
                owners.entry(blob).or_default().insert(row.get(1)?);
            }
        }
        if owners.len() == wanted.len() {
            return Ok(owners);
        }
        // Blobs no live entry names: every event that stored one counts.
        let named_by_entries: HashSet<BlobHash> = owners.keys().copied().collect();
        let mut mailbox_user = self.conn.prepare("SELECT user FROM mailboxes WHERE id = ?1")?;
        let mut stmt = self.conn.prepare("SELECT payload FROM events")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let Some(op) = crate::log::EventOp::from_payload(&row.get::<_, Vec<u8>>(0)?) else {
                return Err(StoreError::Corrupt("a stored event does not decode".into()));
            };
            let Some(mailbox) = op.blob_mailbox() else { continue };
            let unowned: Vec<BlobHash> =
                op.blobs().into_iter().filter(|b| wanted.contains(b) && !named_by_entries.contains(b)).collect();
            for blob in unowned {
                let user: Option<String> = mailbox_user.query_row([mailbox.raw()], |r| r.get(0)).optional()?;
                owners.entry(blob).or_default().extend(user);
            }
        }
        Ok(owners)
    }

    /// Every existing user and their key record (None: no key yet).
    fn keys_by_user(&self) -> StoreResult<HashMap<String, Option<UserKeys>>> {
        let mut stmt = self.conn.prepare("SELECT name FROM users")?;
        let names: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        names.into_iter().map(|name| Ok((name.clone(), crate::store::state::user_keys(&self.conn, &name)?))).collect()
    }
}

/// The sealers a blob is sealed to, or why it stays in clear.
fn sealers_for(
    owners: Option<&BTreeSet<String>>,
    keys: &HashMap<String, Option<UserKeys>>,
) -> Result<Vec<(String, Sealer)>, String> {
    let existing: Vec<&String> = owners.into_iter().flatten().filter(|u| keys.contains_key(*u)).collect();
    if existing.is_empty() {
        return Err("no mailbox of an existing user names it".into());
    }
    let mut sealers = Vec::with_capacity(existing.len());
    for user in existing {
        let Some(Some(record)) = keys.get(user) else {
            return Err(format!(
                "user {user} has no encryption key (created before encryption); `roost user passwd {user}` creates it"
            ));
        };
        sealers.push((user.clone(), record.sealer(user).map_err(|e| e.to_string())?));
    }
    Ok(sealers)
}

fn blob_column(raw: &[u8]) -> StoreResult<BlobHash> {
    BlobHash::from_slice(raw).ok_or_else(|| StoreError::Corrupt("a blob column is not 32 bytes".into()))
}
