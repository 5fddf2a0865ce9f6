//! Content-addressed blob store: one file per distinct message, named by the
//! BLAKE3 hash of its bytes, under `blobs/ab/cdef...`.
//!
//! A blob is durable before any event refers to it: written to `blobs/tmp/`,
//! fsynced, renamed into place, and the directory fsynced. A blob whose event
//! never committed is an orphan, never a dangling reference.
//!
//! One exception to "named by the hash of its bytes": a message stored in
//! clear before encryption and later **sealed in place** (`seal_existing.rs`)
//! keeps its plaintext name, because signed, replicated events name it. Such
//! a file is an age file whose name is the BLAKE3 of its *plaintext*; it is
//! accepted wherever bytes are hash-checked (read, received from a peer) if
//! it has the shape of an age file (and, received from a peer, holds as much
//! plaintext as the events naming it say: [`BlobStore::check_named`]), and
//! checked end to end when it is opened ([`BlobStore::get_plain`]).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::crypto::{self, Sealer, SessionKey};
use crate::model::BlobHash;
use crate::store::StoreError;

/// Where blobs live.
#[derive(Debug)]
pub enum BlobStore {
    /// A directory on disk.
    Dir(PathBuf),
    /// In memory, for the simulator and tests.
    Memory(Mutex<HashMap<BlobHash, Vec<u8>>>),
}

/// A message made durable before its event (see [`BlobStore::put_message`]).
#[derive(Debug, Clone, Copy)]
pub struct PrestoredMessage {
    /// The blob written.
    pub blob: BlobHash,
    /// The user's content hash when the blob is sealed.
    pub sealed_content: Option<[u8; 32]>,
}

/// A blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// File system error, with the path.
    #[error("blob store {path}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// No blob with this hash.
    #[error("blob {0:?} is missing")]
    Missing(BlobHash),
    /// The bytes on disk do not hash to the name.
    #[error("blob {0:?} is corrupt: its bytes hash to something else")]
    Corrupt(BlobHash),
    /// Bytes received for a blob do not hash to the name they came under.
    #[error("the bytes received for blob {expected:?} hash to {actual:?}")]
    Mismatch {
        /// The hash the bytes were announced under.
        expected: BlobHash,
        /// What they hash to.
        actual: BlobHash,
    },
    /// Bytes received for a blob do not hash to its name and are an age
    /// file that cannot be that message sealed in place.
    #[error("the age file received for blob {hash:?} cannot be that message sealed in place: {reason}")]
    NotSealedInPlace {
        /// The hash the bytes were announced under.
        hash: BlobHash,
        /// What rules it out.
        reason: String,
    },
    /// A blob staged by one kind of store was committed to another.
    #[error("blob {0:?} was staged in memory but committed to a directory store")]
    WrongStore(BlobHash),
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io { path: path.to_path_buf(), source }
}

/// Most threads one `commit` fsyncs with: concurrent fsyncs share the
/// journal's commits (`cli/import.rs` measured 270 fsyncs/s on one thread and
/// 3,000/s on 64).
const SYNC_THREADS_MAX: usize = 64;

/// Runs `f` on every item, spread over up to `SYNC_THREADS_MAX` threads;
/// the first error wins.
fn in_parallel<T: Sync>(items: &[T], f: impl Fn(&T) -> Result<(), BlobError> + Sync) -> Result<(), BlobError> {
    if items.len() <= 1 {
        return items.iter().try_for_each(&f);
    }
    let threads = items.len().min(SYNC_THREADS_MAX);
    let per_thread = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            items.chunks(per_thread).map(|chunk| scope.spawn(|| chunk.iter().try_for_each(&f))).collect();
        let mut first = Ok(());
        for handle in handles {
            // A panicking fsync thread is a bug; surface it as the caller's.
            let res = handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            if first.is_ok() {
                first = res;
            }
        }
        first
    })
}

/// A temporary file, removed when dropped unless kept (renamed into place).
#[derive(Debug)]
struct TmpFile(Option<PathBuf>);

impl TmpFile {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    fn keep(&mut self) {
        self.0 = None;
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // Best effort: an orphan in tmp/ is harmless, never referenced.
            let _ = fs::remove_file(path);
        }
    }
}

#[derive(Debug)]
enum Target {
    File { file: File, tmp: TmpFile },
    Memory(Vec<u8>),
}

/// The rest of [`BlobStore::check_named`] for bytes of `len` that hash to
/// `actual`, not to `expected`, and start with `head`.
fn check_sealed_in_place(
    expected: &BlobHash,
    actual: BlobHash,
    head: &[u8],
    len: u64,
    plain_size: Option<u64>,
) -> Result<(), BlobError> {
    if !crypto::is_sealed(head) {
        return Err(BlobError::Mismatch { expected: *expected, actual });
    }
    let refused = |reason: String| BlobError::NotSealedInPlace { hash: *expected, reason };
    let plain = crypto::sealed_plain_len(head, len).map_err(refused)?;
    match plain_size {
        Some(size) if size != plain => {
            Err(refused(format!("it holds {plain} bytes of plaintext, its events name a message of {size} bytes")))
        }
        _ => Ok(()),
    }
}

/// A blob being written in pieces; see `BlobStore::writer`. Dropped before
/// `finish`, it leaves nothing behind.
#[derive(Debug)]
pub struct BlobWriter {
    target: Target,
    hasher: blake3::Hasher,
    /// The first bytes written: the age header line, and when they start
    /// with it up to `AGE_HEADER_BYTES_MAX`, to check a sealed-in-place
    /// blob, which does not hash to its name.
    head: Vec<u8>,
    len: u64,
}

impl BlobWriter {
    /// Appends the next piece.
    pub fn write(&mut self, piece: &[u8]) -> Result<(), BlobError> {
        match &mut self.target {
            Target::File { file, tmp } => file.write_all(piece).map_err(io_err(tmp.path()))?,
            Target::Memory(raw) => raw.extend_from_slice(piece),
        }
        self.hasher.update(piece);
        // Past the first piece only for an age file (a copy of at most
        // `AGE_HEADER_BYTES_MAX`, once).
        let plain = crypto::AGE_MAGIC.len() <= self.head.len() && !crypto::is_sealed(&self.head);
        if !plain {
            let head_missing = crypto::AGE_HEADER_BYTES_MAX.saturating_sub(self.head.len());
            self.head.extend_from_slice(&piece[..head_missing.min(piece.len())]);
        }
        self.len += piece.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Checks that the bytes hash to `expected` (or are sealed in place, see
    /// the module doc) and stages them (not yet durable: see
    /// `BlobStore::commit`). On a mismatch the bytes are discarded.
    pub fn finish(self, expected: &BlobHash) -> Result<StagedBlob, BlobError> {
        self.finish_declared(expected, None)
    }

    /// [`BlobWriter::finish`] for bytes received from a peer for a message
    /// the events name with `plain_size` bytes (RFC822.SIZE): a sealed-in-place
    /// blob must hold that much plaintext ([`BlobStore::check_named`]).
    pub fn finish_declared(self, expected: &BlobHash, plain_size: Option<u64>) -> Result<StagedBlob, BlobError> {
        let actual = BlobHash::from_bytes(*self.hasher.finalize().as_bytes());
        if actual != *expected {
            check_sealed_in_place(expected, actual, &self.head, self.len, plain_size)?;
        }
        let content = match self.target {
            Target::File { file, tmp } => Staged::File { file, tmp },
            Target::Memory(raw) => Staged::Memory(raw),
        };
        Ok(StagedBlob { hash: *expected, content })
    }
}

#[derive(Debug)]
enum Staged {
    /// The store had the blob already.
    Present,
    File {
        file: File,
        tmp: TmpFile,
    },
    Memory(Vec<u8>),
}

/// A blob whose bytes are written and hash-checked but not yet durable or
/// visible; `BlobStore::commit` finishes it. Dropped uncommitted, it leaves
/// nothing behind.
#[derive(Debug)]
pub struct StagedBlob {
    hash: BlobHash,
    content: Staged,
}

impl StagedBlob {
    /// The blob's hash.
    pub fn hash(&self) -> BlobHash {
        self.hash
    }
}

#[derive(Debug)]
enum ReadSource {
    File(File),
    Memory(io::Cursor<Vec<u8>>),
}

/// A stored blob opened for reading in pieces; see `BlobStore::open`.
#[derive(Debug)]
pub struct BlobReader {
    len: u64,
    source: ReadSource,
}

impl BlobReader {
    /// The blob's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the blob is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl io::Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.source {
            ReadSource::File(file) => io::Read::read(file, buf),
            ReadSource::Memory(cursor) => io::Read::read(cursor, buf),
        }
    }
}

/// The blob a file under `blobs/ab/cdef...` holds, if its name is one.
fn hash_of_path(path: &Path) -> Option<BlobHash> {
    let shard = path.parent()?.file_name()?.to_str()?;
    let rest = path.file_name()?.to_str()?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(format!("{shard}{rest}"), &mut bytes).ok()?;
    Some(BlobHash::from_bytes(bytes))
}

impl BlobStore {
    /// A store in `dir`, created if missing.
    pub fn open_dir(dir: &Path) -> Result<BlobStore, BlobError> {
        fs::create_dir_all(dir.join("tmp")).map_err(io_err(dir))?;
        Ok(BlobStore::Dir(dir.to_path_buf()))
    }

    /// An in-memory store.
    pub fn memory() -> BlobStore {
        BlobStore::Memory(Mutex::new(HashMap::new()))
    }

    fn path_of(dir: &Path, hash: &BlobHash) -> PathBuf {
        dir.join(Self::relative_path(hash))
    }

    /// Where a blob lives below the blob directory (backups copy this layout).
    pub fn relative_path(hash: &BlobHash) -> PathBuf {
        let hex = hash.to_hex();
        Path::new(&hex[..2]).join(&hex[2..])
    }

    /// Stores `raw` durably and returns its hash. Storing the same bytes again
    /// writes nothing.
    pub fn put(&self, raw: &[u8]) -> Result<BlobHash, BlobError> {
        let staged = self.stage(raw)?;
        let hash = staged.hash;
        self.commit(vec![staged])?;
        Ok(hash)
    }

    /// Writes `raw` to a temporary file without making it durable: the first
    /// half of `put`, for callers that store many blobs and make them durable
    /// together with `commit` (one round of overlapping fsyncs, not one per
    /// blob).
    pub fn stage(&self, raw: &[u8]) -> Result<StagedBlob, BlobError> {
        let hash = BlobHash::of(raw);
        if self.contains(&hash) {
            return Ok(StagedBlob { hash, content: Staged::Present });
        }
        let mut writer = self.writer()?;
        writer.write(raw)?;
        writer.finish(&hash)
    }

    /// A writer for a blob that arrives in pieces (from the network): the
    /// bytes go to a temporary file as they come, hashed on the way, so a
    /// large message is never whole in memory.
    pub fn writer(&self) -> Result<BlobWriter, BlobError> {
        let target = match self {
            BlobStore::Memory(_) => Target::Memory(Vec::new()),
            BlobStore::Dir(dir) => {
                let path = dir.join("tmp").join(format!(
                    "{}.{}.part",
                    std::process::id(),
                    TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
                ));
                let file = File::create(&path).map_err(io_err(&path))?;
                Target::File { file, tmp: TmpFile(Some(path)) }
            }
        };
        Ok(BlobWriter { target, hasher: blake3::Hasher::new(), head: Vec::new(), len: 0 })
    }

    /// Makes staged blobs durable and visible: fsyncs their files (in
    /// parallel, so the disk's journal commits them together), renames each
    /// into place, then fsyncs the directories that received them. Only after
    /// this returns may an event naming one of them commit.
    pub fn commit(&self, staged: Vec<StagedBlob>) -> Result<(), BlobError> {
        let dir = match self {
            BlobStore::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                for blob in staged {
                    if let Staged::Memory(raw) = blob.content {
                        map.entry(blob.hash).or_insert(raw);
                    }
                }
                return Ok(());
            }
            BlobStore::Dir(dir) => dir,
        };
        let mut files = Vec::with_capacity(staged.len());
        for blob in staged {
            match blob.content {
                Staged::File { file, tmp } => files.push((blob.hash, file, tmp)),
                Staged::Present => {}
                Staged::Memory(_) => return Err(BlobError::WrongStore(blob.hash)),
            }
        }
        in_parallel(&files, |(_, file, tmp)| file.sync_all().map_err(io_err(tmp.path())))?;
        let mut parents = std::collections::BTreeSet::new();
        for (hash, file, mut tmp) in files {
            drop(file);
            let path = Self::path_of(dir, &hash);
            let parent = path.parent().unwrap_or(dir).to_path_buf();
            if !parents.contains(&parent) {
                fs::create_dir_all(&parent).map_err(io_err(&parent))?;
            }
            fs::rename(tmp.path(), &path).map_err(io_err(&path))?;
            tmp.keep();
            parents.insert(parent);
        }
        // A rename is durable only once its directory is synced.
        let parents: Vec<PathBuf> = parents.into_iter().collect();
        in_parallel(&parents, |parent| File::open(parent).and_then(|d| d.sync_all()).map_err(io_err(parent)))
    }

    /// Stores several blobs and returns once each is durable under its name,
    /// including those the store had already: such a one may have been
    /// renamed into place by a concurrent `commit` that has not yet fsynced
    /// its directory, so its directory is fsynced here too. What the blob
    /// spool calls before it forgets a blob (`Store::unspool`).
    pub fn put_all(&self, raws: &[&[u8]]) -> Result<(), BlobError> {
        let staged = raws.iter().map(|raw| self.stage(raw)).collect::<Result<Vec<_>, _>>()?;
        let present: Vec<BlobHash> =
            staged.iter().filter(|b| matches!(b.content, Staged::Present)).map(|b| b.hash).collect();
        self.commit(staged)?;
        self.sync_parent_dirs(&present)
    }

    /// Opens a blob for reading in pieces (to send it to a peer without
    /// holding it in memory); returns its length and a reader. The bytes are
    /// not hash-checked here: the receiver checks them.
    pub fn open(&self, hash: &BlobHash) -> Result<BlobReader, BlobError> {
        match self {
            BlobStore::Memory(map) => {
                let raw = map
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(hash)
                    .cloned()
                    .ok_or(BlobError::Missing(*hash))?;
                Ok(BlobReader { len: raw.len() as u64, source: ReadSource::Memory(io::Cursor::new(raw)) })
            }
            BlobStore::Dir(dir) => {
                let path = Self::path_of(dir, hash);
                let file = match File::open(&path) {
                    Ok(file) => file,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BlobError::Missing(*hash)),
                    Err(source) => return Err(BlobError::Io { path, source }),
                };
                let len = file.metadata().map_err(io_err(&path))?.len();
                Ok(BlobReader { len, source: ReadSource::File(file) })
            }
        }
    }

    /// Stores a message ahead of the transaction that will name it (LMTP,
    /// import: the fsync stays off the committer), sealed when `sealer` is
    /// given. The write then calls [`crate::store::Writer::adopt_prestored`]
    /// so its append uses this blob instead of storing the message again.
    /// A session key given (APPEND: the session holds the user's identity)
    /// learns the sealed blob's file key for the file-key cache.
    pub fn put_message(
        &self,
        sealer: Option<&Sealer>,
        raw: &[u8],
        key: Option<&SessionKey>,
    ) -> Result<PrestoredMessage, StoreError> {
        match sealer {
            Some(sealer) => {
                let (sealed, file_key) = sealer.seal_recording(raw)?;
                let blob = self.put(&sealed)?;
                if let (Some(key), Some(file_key)) = (key, file_key) {
                    key.learn_file_key(&blob, file_key);
                }
                Ok(PrestoredMessage { blob, sealed_content: Some(sealer.content_hash(raw)) })
            }
            None => Ok(PrestoredMessage { blob: self.put(raw)?, sealed_content: None }),
        }
    }

    /// Whether the blob is present.
    pub fn contains(&self, hash: &BlobHash) -> bool {
        match self {
            BlobStore::Memory(map) => map.lock().unwrap_or_else(|e| e.into_inner()).contains_key(hash),
            BlobStore::Dir(dir) => Self::path_of(dir, hash).exists(),
        }
    }

    /// Stages bytes received under `hash` (from a peer): they must hash to
    /// it, or be sealed in place (see the module doc).
    pub fn stage_named(&self, hash: &BlobHash, raw: &[u8]) -> Result<StagedBlob, BlobError> {
        if self.contains(hash) {
            return Ok(StagedBlob { hash: *hash, content: Staged::Present });
        }
        let mut writer = self.writer()?;
        writer.write(raw)?;
        writer.finish(hash)
    }

    /// Stores bytes received under `hash` durably (see
    /// [`BlobStore::stage_named`]).
    pub fn put_named(&self, hash: &BlobHash, raw: &[u8]) -> Result<(), BlobError> {
        let staged = self.stage_named(hash, raw)?;
        self.commit(vec![staged])
    }

    /// Replaces the plaintext blob `hash` by `sealed`, its plaintext sealed,
    /// under the same name (`seal_existing.rs`): staged, fsynced, renamed over
    /// the plaintext file, directory fsynced, so a crash leaves one or the
    /// other, never neither.
    pub fn replace_sealed(&self, replacements: Vec<(BlobHash, Vec<u8>)>) -> Result<(), BlobError> {
        let mut staged = Vec::with_capacity(replacements.len());
        for (hash, sealed) in replacements {
            assert!(crypto::is_sealed(&sealed), "blob {hash:?} is replaced by a non-age file");
            if let BlobStore::Memory(map) = self {
                map.lock().unwrap_or_else(|e| e.into_inner()).insert(hash, sealed);
                continue;
            }
            let mut writer = self.writer()?;
            writer.write(&sealed)?;
            staged.push(writer.finish(&hash)?);
        }
        self.commit(staged)
    }

    /// Every blob's hash and whether the stored bytes are sealed (an age
    /// file), from the first bytes of each file.
    pub fn list(&self) -> Result<Vec<(BlobHash, bool)>, BlobError> {
        match self {
            BlobStore::Memory(map) => {
                let map = map.lock().unwrap_or_else(|e| e.into_inner());
                Ok(map.iter().map(|(hash, raw)| (*hash, crypto::is_sealed(raw))).collect())
            }
            BlobStore::Dir(dir) => {
                let mut out = Vec::new();
                for path in Self::files(dir)? {
                    // Not a blob name (a stray file): not ours to judge.
                    let Some(hash) = hash_of_path(&path) else { continue };
                    let mut head = Vec::with_capacity(crypto::AGE_MAGIC.len());
                    let file = File::open(&path).map_err(io_err(&path))?;
                    io::Read::read_to_end(&mut io::Read::take(file, crypto::AGE_MAGIC.len() as u64), &mut head)
                        .map_err(io_err(&path))?;
                    out.push((hash, crypto::is_sealed(&head)));
                }
                Ok(out)
            }
        }
    }

    /// The paths of all blob files (`blobs/ab/cdef...`, not `tmp/`).
    fn files(dir: &Path) -> Result<Vec<PathBuf>, BlobError> {
        let mut files = Vec::new();
        for shard in fs::read_dir(dir).map_err(io_err(dir))? {
            let shard = shard.map_err(io_err(dir))?;
            if shard.file_name() == "tmp" || !shard.path().is_dir() {
                continue;
            }
            let shard_path = shard.path();
            for entry in fs::read_dir(&shard_path).map_err(io_err(&shard_path))? {
                files.push(entry.map_err(io_err(&shard_path))?.path());
            }
        }
        Ok(files)
    }

    /// A message's plaintext: a sealed blob is opened with `key` (the
    /// session's unlocked identity), a plaintext blob (encryption off, or
    /// stored before it existed) returned as it is. A sealed-in-place blob
    /// is checked against its name after opening. What `key` opens is kept
    /// in its session's cache, and served from there the next time.
    pub fn get_plain(&self, hash: &BlobHash, key: Option<&SessionKey>) -> Result<Vec<u8>, StoreError> {
        if let Some(plain) = key.and_then(|k| k.opened().get(hash)) {
            return Ok(plain);
        }
        let (stored, _) = self.read_checked(hash)?;
        Self::open_stored(hash, stored, key)
    }

    /// Whether `raw` may be stored under `hash`: [`BlobStore::check_named`]
    /// without a declared size.
    pub fn accepts(hash: &BlobHash, raw: &[u8]) -> bool {
        Self::check_named(hash, raw, None).is_ok()
    }

    /// Checks bytes received under `hash`: they hash to the name, or they
    /// may be that message sealed in place (it keeps its plaintext's name):
    /// an age file of a well-formed header and a payload length age writes,
    /// holding `plain_size` bytes of plaintext where the events naming the
    /// blob say so. That the plaintext hashes to the name needs the user's
    /// key: checked when opened ([`BlobStore::open_stored`]).
    pub fn check_named(hash: &BlobHash, raw: &[u8], plain_size: Option<u64>) -> Result<(), BlobError> {
        let actual = BlobHash::of(raw);
        if actual == *hash {
            return Ok(());
        }
        let head = &raw[..raw.len().min(crypto::AGE_HEADER_BYTES_MAX)];
        check_sealed_in_place(hash, actual, head, raw.len() as u64, plain_size)
    }

    /// The plaintext of `stored`, the bytes kept under `hash` (already
    /// checked by [`BlobStore::accepts`]): see [`BlobStore::get_plain`].
    pub(crate) fn open_stored(
        hash: &BlobHash,
        stored: Vec<u8>,
        key: Option<&SessionKey>,
    ) -> Result<Vec<u8>, StoreError> {
        if !crypto::is_sealed(&stored) {
            return Ok(stored);
        }
        let named_by_bytes = BlobHash::of(&stored) == *hash;
        let Some(key) = key else {
            return Err(StoreError::Sealed(*hash));
        };
        let plain = key.open_blob(hash, &stored)?;
        if !named_by_bytes && BlobHash::of(&plain) != *hash {
            return Err(BlobError::Corrupt(*hash).into());
        }
        key.opened().insert(hash, &plain);
        Ok(plain)
    }

    /// Reads a blob and checks its hash (a sealed-in-place blob is checked
    /// when it is opened: [`BlobStore::get_plain`]).
    pub fn get(&self, hash: &BlobHash) -> Result<Vec<u8>, BlobError> {
        Ok(self.read_checked(hash)?.0)
    }

    /// The stored bytes, and whether they hash to the name (else they are
    /// sealed in place; anything else is corrupt).
    fn read_checked(&self, hash: &BlobHash) -> Result<(Vec<u8>, bool), BlobError> {
        let raw = match self {
            BlobStore::Memory(map) => {
                map.lock().unwrap_or_else(|e| e.into_inner()).get(hash).cloned().ok_or(BlobError::Missing(*hash))?
            }
            BlobStore::Dir(dir) => {
                let path = Self::path_of(dir, hash);
                match fs::read(&path) {
                    Ok(raw) => raw,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BlobError::Missing(*hash)),
                    Err(source) => return Err(BlobError::Io { path, source }),
                }
            }
        };
        let named_by_bytes = BlobHash::of(&raw) == *hash;
        if !named_by_bytes && !crypto::is_sealed(&raw) {
            return Err(BlobError::Corrupt(*hash));
        }
        Ok((raw, named_by_bytes))
    }

    /// Unlinks a blob's file (blob garbage collection, `gc.rs`, which decided
    /// under the store's write lock that nothing names it); returns its size,
    /// or `None` if it was not there. Durable once [`BlobStore::sync_removals`]
    /// returned.
    pub fn remove(&self, hash: &BlobHash) -> Result<Option<u64>, BlobError> {
        match self {
            BlobStore::Memory(map) => {
                Ok(map.lock().unwrap_or_else(|e| e.into_inner()).remove(hash).map(|raw| raw.len() as u64))
            }
            BlobStore::Dir(dir) => {
                let path = Self::path_of(dir, hash);
                let len = match fs::metadata(&path) {
                    Ok(meta) => meta.len(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(source) => return Err(BlobError::Io { path, source }),
                };
                match fs::remove_file(&path) {
                    Ok(()) => Ok(Some(len)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(BlobError::Io { path, source }),
                }
            }
        }
    }

    /// Fsyncs the directories of removed blobs, so the unlinks survive a
    /// crash (a file that came back would only be collected again).
    pub fn sync_removals(&self, hashes: &[BlobHash]) -> Result<(), BlobError> {
        self.sync_parent_dirs(hashes)
    }

    /// Fsyncs the shard directories of `hashes` (in parallel).
    fn sync_parent_dirs(&self, hashes: &[BlobHash]) -> Result<(), BlobError> {
        let BlobStore::Dir(dir) = self else { return Ok(()) };
        let parents: std::collections::BTreeSet<PathBuf> =
            hashes.iter().map(|h| Self::path_of(dir, h).parent().unwrap_or(dir).to_path_buf()).collect();
        let parents: Vec<PathBuf> = parents.into_iter().collect();
        in_parallel(&parents, |parent| File::open(parent).and_then(|d| d.sync_all()).map_err(io_err(parent)))
    }

    /// Total bytes and number of blobs stored.
    pub fn usage(&self) -> Result<(u64, u64), BlobError> {
        match self {
            BlobStore::Memory(map) => {
                let map = map.lock().unwrap_or_else(|e| e.into_inner());
                Ok((map.values().map(|v| v.len() as u64).sum(), map.len() as u64))
            }
            BlobStore::Dir(dir) => {
                let (mut bytes, mut count) = (0, 0);
                for path in Self::files(dir)? {
                    bytes += fs::metadata(&path).map_err(io_err(&path))?.len();
                    count += 1;
                }
                Ok((bytes, count))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn put_is_idempotent_and_get_checks_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open_dir(dir.path()).unwrap();
        let h1 = store.put(b"hello").unwrap();
        let h2 = store.put(b"hello").unwrap();
        assert_eq!(h1, h2);
        assert_eq!(store.usage().unwrap(), (5, 1));
        assert_eq!(store.get(&h1).unwrap(), b"hello");
        // Corrupt the file: reading it must fail, not return wrong bytes.
        let path = BlobStore::path_of(dir.path(), &h1);
        fs::write(&path, b"hellO").unwrap();
        assert!(matches!(store.get(&h1), Err(BlobError::Corrupt(_))));
        let missing = BlobHash::of(b"nope");
        assert!(matches!(store.get(&missing), Err(BlobError::Missing(_))));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    /// A message stored in clear, then sealed in place: it keeps its name,
    /// reads back sealed, opens only with the key, is accepted from a peer
    /// under that name while other bytes are not, and a different sealed
    /// message under the name fails the check at opening. What a key opens
    /// is kept in its cache, within the budget.
    #[test]
    fn a_blob_sealed_in_place_keeps_its_name_and_is_checked_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open_dir(dir.path()).unwrap();
        let plain = b"Subject: in clear\r\n\r\nbody";
        let hash = store.put(plain).unwrap();
        let mut rng = rand::rngs::OsRng;
        let (keys, _) = crate::crypto::UserKeys::generate("a passphrase", &mut rng);
        let sealer = keys.sealer("alice").unwrap();
        let sealed = sealer.seal(plain).unwrap();
        store.replace_sealed(vec![(hash, sealed.clone())]).unwrap();
        assert_eq!(store.get(&hash).unwrap(), sealed);
        assert_eq!(store.list().unwrap(), vec![(hash, true)]);
        assert!(matches!(store.get_plain(&hash, None), Err(StoreError::Sealed(_))));
        let mut key = keys.unlock("alice", "a passphrase").unwrap();
        let budget = crate::crypto::OpenedBudget::new(1024);
        key.keep_opened(budget.clone());
        assert_eq!(store.get_plain(&hash, Some(&key)).unwrap(), plain);
        assert_eq!(budget.bytes_used(), plain.len());
        assert_eq!(store.get_plain(&hash, Some(&key)).unwrap(), plain);
        drop(key);
        assert_eq!(budget.bytes_used(), 0);

        let peer_dir = tempfile::tempdir().unwrap();
        let peer = BlobStore::open_dir(peer_dir.path()).unwrap();
        assert!(matches!(peer.put_named(&hash, b"Subject: other"), Err(BlobError::Mismatch { .. })));
        peer.put_named(&hash, &sealer.seal(b"Subject: another message").unwrap()).unwrap();
        let key = keys.unlock("alice", "a passphrase").unwrap();
        assert!(matches!(peer.get_plain(&hash, Some(&key)), Err(StoreError::Blob(BlobError::Corrupt(_)))));
        assert_eq!(fs::read_dir(peer_dir.path().join("tmp")).unwrap().count(), 0);
    }

    /// What can be checked of a peer's age file under a plaintext name
    /// without the user's key: its shape, and the size the events declare,
    /// in one piece or streamed in pieces.
    #[test]
    fn a_sealed_blob_from_a_peer_must_have_the_shape_and_size_of_the_named_message() {
        let (keys, _) = crate::crypto::UserKeys::generate("a passphrase", &mut rand::rngs::OsRng);
        let sealer = keys.sealer("alice").unwrap();
        let plain = b"Subject: x\r\n\r\nhi\r\n";
        let hash = BlobHash::of(plain);
        let sealed = sealer.seal(plain).unwrap();
        let other_size = sealer.seal(b"Subject: another size\r\n").unwrap();
        let mut bad_header = crypto::AGE_MAGIC.to_vec();
        bad_header.extend_from_slice(b"junk\n--- x\n");
        let store = BlobStore::memory();
        let streamed = |raw: &[u8], size| {
            let mut writer = store.writer().unwrap();
            raw.chunks(7).for_each(|piece| writer.write(piece).unwrap());
            writer.finish_declared(&hash, size).map(|_| ())
        };
        for size in [None, Some(18)] {
            assert!(BlobStore::check_named(&hash, &sealed, size).is_ok());
            assert!(streamed(&sealed, size).is_ok());
        }
        let refused = |result: Result<(), BlobError>, needle: &str| match result {
            Err(BlobError::NotSealedInPlace { reason, .. }) => assert!(reason.contains(needle), "{reason}"),
            other => panic!("expected a refusal naming {needle:?}, got {other:?}"),
        };
        refused(BlobStore::check_named(&hash, &other_size, Some(18)), "a message of 18 bytes");
        refused(streamed(&other_size, Some(18)), "a message of 18 bytes");
        refused(BlobStore::check_named(&hash, &bad_header, None), "header");
        refused(streamed(&bad_header, None), "header");
        assert!(!BlobStore::accepts(&hash, &bad_header));
        assert!(matches!(BlobStore::check_named(&hash, b"Subject: y", Some(18)), Err(BlobError::Mismatch { .. })));
        // Not checkable here: another plaintext of the same size (opening it
        // finds it: `a_blob_sealed_in_place_keeps_its_name_and_is_checked_when_opened`).
        assert!(BlobStore::check_named(&hash, &sealer.seal(b"Subject: y\r\n\r\nho\r\n").unwrap(), Some(18)).is_ok());
    }

    #[test]
    fn a_blob_written_in_pieces_is_staged_then_committed_with_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open_dir(dir.path()).unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let hash = BlobHash::of(&big);
        let mut writer = store.writer().unwrap();
        for piece in big.chunks(4096) {
            writer.write(piece).unwrap();
        }
        assert_eq!(writer.len(), big.len() as u64);
        let staged = writer.finish(&hash).unwrap();
        // Staged is not visible: nothing may name it before the commit.
        assert!(!store.contains(&hash));
        let small: Vec<StagedBlob> = (0..20).map(|i| store.stage(format!("small {i}").as_bytes()).unwrap()).collect();
        let mut all = vec![staged];
        all.extend(small);
        store.commit(all).unwrap();
        assert_eq!(store.get(&hash).unwrap(), big);
        assert_eq!(store.get(&BlobHash::of(b"small 7")).unwrap(), b"small 7");
        assert_eq!(store.usage().unwrap().1, 21);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        // Read back in pieces.
        let mut reader = store.open(&hash).unwrap();
        assert_eq!(reader.len(), big.len() as u64);
        let mut back = Vec::new();
        reader.read_to_end(&mut back).unwrap();
        assert_eq!(back, big);
        assert!(matches!(store.open(&BlobHash::of(b"nope")), Err(BlobError::Missing(_))));
    }

    #[test]
    fn a_mismatched_or_abandoned_blob_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open_dir(dir.path()).unwrap();
        let mut writer = store.writer().unwrap();
        writer.write(b"not what was announced").unwrap();
        let announced = BlobHash::of(b"announced");
        assert!(matches!(writer.finish(&announced), Err(BlobError::Mismatch { .. })));
        let staged = store.stage(b"staged, never committed").unwrap();
        drop(staged);
        let mut writer = store.writer().unwrap();
        writer.write(b"cut off mid-stream").unwrap();
        drop(writer);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(store.usage().unwrap(), (0, 0));
    }

    #[test]
    fn the_memory_store_stages_and_commits_too() {
        let store = BlobStore::memory();
        let staged = store.stage(b"in memory").unwrap();
        let hash = staged.hash();
        assert!(!store.contains(&hash));
        store.commit(vec![staged]).unwrap();
        assert_eq!(store.get(&hash).unwrap(), b"in memory");
    }
}
