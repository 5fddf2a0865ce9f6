//! Deterministic simulation of 2 to 5 devices replicating one user's mail
//! (STYLE 20). Everything runs on one thread from one seed: a ChaCha RNG, a
//! virtual clock (each device sees it with a fixed skew), a network that loses,
//! duplicates, reorders and partitions (`net`), crashes that lose the write in
//! progress and what was on its way to the device, and phone-like IMAP clients
//! that cache UIDs and MODSEQs and resync with QRESYNC semantics (`client`).
//!
//! After every step each device's whole-state invariants are checked and
//! clients check what they see on resync. At the end the network heals,
//! everything is delivered, and the run checks convergence (equal state
//! digests), `verify` on every device (state = replay of its log), and that no
//! acknowledged message was lost unless an acknowledged removal took it.
//!
//! A failing run names its seed; `ROOST_SIM_SEED=<n> cargo test -p roost-core
//! --test sim` or `roost sim --seed <n>` replays it exactly.

mod client;
mod net;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::log::event::Event;
use crate::log::version_vector::VersionVector;
use crate::model::{BlobHash, DeviceSlot, EntryId, EventId, Flag, ItemId, MailboxId, UserName};
use crate::sim::client::Client;
use crate::sim::net::{Faults, Net, Packet, Payload};
use crate::store::{
    AppendMessage, FlagChange, MailboxInfo, ReceivedSnapshot, Store, StoreError, StoreMode, StoreResult, Writer,
};

/// Virtual time at the start of a run.
const START_MS: u64 = 1_700_000_000_000;
/// Longest step of the virtual clock by default: an operation every ~200 ms
/// on average, far busier than one user, so concurrency is the common case.
const STEP_MS_MAX: u64 = 400;
/// Largest clock skew of a device against the virtual clock, either way.
const SKEW_MS_MAX: u64 = 3_000;
/// Exposure hold while a peer is reachable: about one simulated round trip.
const HOLD_MS: u64 = 2 * LATENCY_MS_MAX;
/// Longest one-way latency.
const LATENCY_MS_MAX: u64 = 300;
/// Events per sync packet.
const EVENTS_PER_PACKET: usize = 48;
/// Mailbox names the random operations use besides INBOX.
const NAMES: [&str; 6] = ["Archive", "Work", "Work/2024", "Lists", "Receipts", "Old"];

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The seed: the whole run follows from it.
    pub seed: u64,
    /// Devices, 2 to 5.
    pub devices: usize,
    /// Random steps before the final settling.
    pub steps: usize,
    /// Longest advance of the virtual clock per step; larger values mean
    /// less concurrency between devices relative to network latency.
    pub step_ms_max: u64,
    /// How hostile the world is (network faults, partitions, crashes).
    pub profile: SimProfile,
    /// Devices 0 and 1 start in the same UID slot (a cloned device, a pairing
    /// race): the one with the greater id must move when it meets the other.
    pub shared_slot: bool,
    /// After settling, a fresh device installs a device's log snapshot
    /// (snapshot transfer), takes the events above it, and must converge;
    /// again once every log is folded. Off in [`SimConfig::for_seed`], so
    /// every seed runs as it did before this check existed (a soak started
    /// on those semantics); `roost sim --late-joiner` turns it on.
    pub late_joiner: bool,
}

/// The world a run simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimProfile {
    /// Far busier and more faulty than any user: an operation every ~200 ms,
    /// 0-20 % loss and duplication, frequent partitions and crashes. Finds bugs.
    Stress,
    /// What a user would see: devices mostly connected (partitions start and
    /// crashes happen a tenth as often, partitions heal as quickly; loss and
    /// duplication 0-2 %), an operation every ~10 s
    /// on average. Reports the re-key rate users would meet.
    Field,
}

/// Longest step of the virtual clock in the field profile.
const FIELD_STEP_MS_MAX: u64 = 20_000;

impl SimConfig {
    /// The default run for `seed`: 2 to 5 devices chosen by the seed, 150 steps.
    pub fn for_seed(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            devices: 2 + (seed % 4) as usize,
            steps: 150,
            step_ms_max: STEP_MS_MAX,
            profile: SimProfile::Stress,
            shared_slot: seed % 8 == 5,
            late_joiner: false,
        }
    }

    /// The field profile for `seed` (see [`SimProfile::Field`]).
    pub fn field(seed: u64) -> SimConfig {
        SimConfig { step_ms_max: FIELD_STEP_MS_MAX, profile: SimProfile::Field, ..SimConfig::for_seed(seed) }
    }
}

/// What a run did and found.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Devices simulated.
    pub devices: usize,
    /// Local operations acknowledged (committed).
    pub ops_acked: u64,
    /// Entries placed by acknowledged local operations (appends, deliveries,
    /// copies, moves): the base of the re-key rate.
    pub entries_placed: u64,
    /// `Rekey` events emitted.
    pub rekeys: u64,
    /// Compactions during the run that folded events.
    pub compactions: u64,
    /// Events folded into log snapshots (during the run and at the end).
    pub folded: u64,
    /// Blobs removed by blob GC, which runs with each compaction (same
    /// vector) and once more at the end.
    pub blobs_collected: u64,
    /// Devices that ended in another UID slot than they started in (moved
    /// off a shared slot).
    pub slot_moves: u64,
    /// Events in each device's log at the end.
    pub events: u64,
    /// Packets sent, lost, duplicated.
    pub packets: (u64, u64, u64),
    /// Writes lost to a simulated crash.
    pub crashes: u64,
    /// Partitions started.
    pub partitions: u64,
    /// Client resyncs checked.
    pub resyncs: u64,
    /// Fresh devices that caught up from a log snapshot (`late_joiner`).
    pub late_joins: u64,
    /// Broken invariants (empty: the run passed). The first one stops the run.
    pub violations: Vec<String>,
}

impl SimReport {
    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        format!(
            "ROOST_SIM_SEED={} cargo test -p roost-core --test sim  # or: roost sim --seed {} --devices {}",
            self.seed, self.seed, self.devices
        )
    }
}

/// Runs one simulation. Never panics: a panic inside the store (a broken
/// assertion) is reported as a violation.
pub fn run(config: &SimConfig) -> SimReport {
    assert!((2..=5).contains(&config.devices), "2 to 5 devices, not {}", config.devices);
    let mut report = SimReport { seed: config.seed, devices: config.devices, ..SimReport::default() };
    let res = catch_unwind(AssertUnwindSafe(|| {
        let mut sim = Sim::new(config)?;
        sim.run(config.steps, config.step_ms_max.max(1))?;
        sim.settle_and_check()?;
        Ok::<Sim, Failure>(sim)
    }));
    let sim = match res {
        Ok(Ok(sim)) => Some(sim),
        Ok(Err(failure)) => {
            report.violations.push(failure.0);
            None
        }
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            report.violations.push(format!("panic: {msg}"));
            None
        }
    };
    if let Some(sim) = sim {
        report.ops_acked = sim.ops_acked;
        report.entries_placed = sim.entries_placed;
        report.rekeys = sim.rekeys;
        report.compactions = sim.compactions;
        report.slot_moves = sim.devices.iter().filter(|d| d.store.identity().slot() != d.first_slot).count() as u64;
        report.folded = sim.folded;
        report.blobs_collected = sim.blobs_collected;
        report.events = sim.devices[0].store.version_vector().map(|v| v.total()).unwrap_or(0);
        report.packets = (sim.net.sent, sim.net.lost, sim.net.duplicated);
        report.crashes = sim.crashes;
        report.partitions = sim.partitions;
        report.resyncs = sim.clients.iter().map(|c| c.resyncs).sum();
        report.late_joins = sim.late_joins;
    }
    report
}

/// Why a run stopped.
#[derive(Debug)]
struct Failure(String);

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Failure {
        Failure(format!("store error: {err}"))
    }
}

type SimResult<T> = Result<T, Failure>;

struct Device {
    store: Store,
    first_slot: DeviceSlot,
    skew_ms: i64,
    /// What each peer acknowledged having (lost on a crash).
    acked: Vec<VersionVector>,
    /// What was streamed to each peer since (optimistic, like a stream: a
    /// loss leaves a gap that the next anti-entropy round from `acked` fills).
    sent: Vec<VersionVector>,
}

struct Sim {
    rng: ChaCha8Rng,
    now_ms: u64,
    step: usize,
    user: UserName,
    devices: Vec<Device>,
    net: Net,
    clients: Vec<Client>,
    /// Every message body by blob: peers "fetch" blobs from here.
    blobs: BTreeMap<BlobHash, Vec<u8>>,
    /// Messages whose append or delivery was acknowledged.
    acked: BTreeSet<BlobHash>,
    /// Messages an acknowledged expunge or mailbox delete removed somewhere.
    removed: BTreeSet<BlobHash>,
    /// Flags an acknowledged STORE set (item, flag, the STORE's event), and
    /// removals (item, flag, what the removing device had seen): an add no
    /// removal had seen must survive (add-wins).
    flags_added: Vec<(ItemId, Flag, EventId)>,
    flags_removed: Vec<(ItemId, Flag, VersionVector)>,
    messages: u64,
    ops_acked: u64,
    entries_placed: u64,
    rekeys: u64,
    crashes: u64,
    partitions: u64,
    /// Log compactions that folded something, and events folded in all.
    compactions: u64,
    folded: u64,
    blobs_collected: u64,
    /// Devices whose state changed this step: their invariants are checked.
    dirty: Vec<bool>,
    /// The field profile: partitions start and crashes happen a tenth as often.
    field: bool,
    /// `SimConfig::late_joiner`, and the fresh devices that caught up.
    late_joiner: bool,
    late_joins: u64,
    seed: u64,
}

/// A local operation, chosen at random.
#[derive(Debug, Clone, Copy)]
enum Op {
    Append,
    DeliverTwice,
    Flags,
    Expunge,
    Move,
    Copy,
    Create,
    Rename,
    Delete,
}

const OPS: [(Op, u32); 9] = [
    (Op::Append, 30),
    (Op::DeliverTwice, 8),
    (Op::Flags, 20),
    (Op::Expunge, 8),
    (Op::Move, 10),
    (Op::Copy, 5),
    (Op::Create, 5),
    (Op::Rename, 4),
    (Op::Delete, 3),
];

impl Sim {
    fn new(config: &SimConfig) -> SimResult<Sim> {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut devices = Vec::with_capacity(config.devices);
        for d in 0..config.devices {
            let mut secret = [0u8; 32];
            rng.fill(&mut secret);
            let slot_number = if config.shared_slot && d == 1 { 0 } else { d as u8 };
            let slot = DeviceSlot::new(slot_number).ok_or_else(|| Failure("slot".into()))?;
            let store = Store::in_memory(secret, slot, START_MS)?;
            let skew_ms = rng.gen_range(0..=2 * SKEW_MS_MAX) as i64 - SKEW_MS_MAX as i64;
            devices.push(Device {
                store,
                first_slot: slot,
                skew_ms,
                acked: vec![VersionVector::new(); config.devices],
                sent: vec![VersionVector::new(); config.devices],
            });
        }
        let fault_pm_max = if config.profile == SimProfile::Field { 20 } else { 200 };
        let faults = Faults {
            loss_pm: rng.gen_range(0..fault_pm_max),
            dup_pm: rng.gen_range(0..fault_pm_max),
            latency_ms_max: LATENCY_MS_MAX,
        };
        let user = UserName::new("alice").map_err(|e| Failure(format!("{e}")))?;
        let mut sim = Sim {
            rng,
            now_ms: START_MS + 2 * SKEW_MS_MAX,
            step: 0,
            user,
            devices,
            net: Net::new(config.devices, faults),
            clients: Vec::new(),
            blobs: BTreeMap::new(),
            acked: BTreeSet::new(),
            removed: BTreeSet::new(),
            flags_added: Vec::new(),
            flags_removed: Vec::new(),
            messages: 0,
            ops_acked: 0,
            entries_placed: 0,
            rekeys: 0,
            crashes: 0,
            partitions: 0,
            compactions: 0,
            blobs_collected: 0,
            folded: 0,
            dirty: vec![true; config.devices],
            field: config.profile == SimProfile::Field,
            late_joiner: config.late_joiner,
            late_joins: 0,
            seed: config.seed,
        };
        // The user exists everywhere before devices go their own ways.
        let now = sim.device_now(0);
        let user = sim.user.clone();
        sim.devices[0].store.write(now, |w| w.add_user(&user, "$argon2id$sim"))?;
        sim.settle()?;
        Ok(sim)
    }

    fn device_now(&self, d: usize) -> u64 {
        (self.now_ms as i64 + self.devices[d].skew_ms) as u64
    }

    fn fail<T>(&self, what: String) -> SimResult<T> {
        let when = if self.step == usize::MAX { "after settling".to_string() } else { format!("step {}", self.step) };
        Err(Failure(format!("{when}: {what}")))
    }

    fn run(&mut self, steps: usize, step_ms_max: u64) -> SimResult<()> {
        for step in 0..steps {
            self.step = step;
            self.now_ms += self.rng.gen_range(1..=step_ms_max);
            self.deliver_due(false)?;
            let roll = self.rng.gen_range(0..100);
            match roll {
                0..=49 => self.local_op()?,
                50..=74 => {
                    // Anti-entropy: resume from what the peer acknowledged.
                    let a = self.rng.gen_range(0..self.devices.len());
                    let b = self.rng.gen_range(0..self.devices.len());
                    if a != b {
                        self.devices[a].sent[b] = self.devices[a].acked[b].clone();
                        self.sync(a, b, false)?;
                    }
                }
                75..=86 => self.resync_client()?,
                // Field: partitions start a tenth as often (and heal as
                // quickly), so devices are connected about 90 % of the time.
                87..=89 if self.field && !self.net.partitioned() && !self.rng.gen_ratio(1, 10) => {}
                90..=91 if self.field && !self.rng.gen_ratio(1, 10) => {}
                87..=89 => {
                    if self.net.partitioned() {
                        self.net.heal();
                    } else {
                        self.net.partition(&mut self.rng);
                        self.partitions += 1;
                    }
                }
                90..=91 => self.crash()?,
                92..=93 => self.compact()?,
                _ => {} // Time passes.
            }
            self.expose_all(false)?;
            self.check_invariants()?;
        }
        Ok(())
    }

    // --- network --------------------------------------------------------------

    /// `a` streams to `b` what it has not streamed to it yet.
    fn sync(&mut self, a: usize, b: usize, reliable: bool) -> SimResult<()> {
        let have = self.devices[a].sent[b].clone();
        let events = match self.devices[a].store.events_missing(&have, EVENTS_PER_PACKET) {
            Ok(events) => events,
            // `a` folded events below what it knows `b` has (it forgot after
            // a crash): like a session handshake, an empty packet makes `b`
            // say what it has (its ack), and streaming resumes from there.
            Err(StoreError::SnapshotNeeded { .. }) => Vec::new(),
            Err(err) => return Err(err.into()),
        };
        if events.is_empty() && have.dominates(&self.devices[a].store.snapshot_vector()?) {
            return Ok(());
        }
        let sent = &mut self.devices[a].sent[b];
        for event in &events {
            sent.set(event.id.origin, sent.get(&event.id.origin).max(event.id.seq));
        }
        let packet = Packet { from: a, to: b, arrive_ms: 0, payload: Payload::Events(events) };
        let now = self.now_ms;
        self.net.send(&mut self.rng, now, packet, reliable);
        Ok(())
    }

    fn deliver_due(&mut self, reliable: bool) -> SimResult<()> {
        for packet in self.net.due(self.now_ms) {
            match packet.payload {
                Payload::Events(mut events) => {
                    if !reliable && self.rng.gen_range(0..4) == 0 {
                        events.shuffle(&mut self.rng); // Reordered within the packet too.
                    }
                    self.ingest(packet.to, &events)?;
                    let vv = self.devices[packet.to].store.version_vector()?;
                    let ack = Packet { from: packet.to, to: packet.from, arrive_ms: 0, payload: Payload::Ack(vv) };
                    let now = self.now_ms;
                    self.net.send(&mut self.rng, now, ack, reliable);
                }
                Payload::Ack(vv) => {
                    let device = &mut self.devices[packet.to];
                    device.acked[packet.from].merge(&vv);
                    device.sent[packet.from].merge(&vv);
                }
            }
        }
        Ok(())
    }

    fn ingest(&mut self, d: usize, events: &[Event]) -> SimResult<()> {
        // The sync layer fetches blobs before it applies events that need them.
        for blob in events.iter().flat_map(|e| e.op.blobs()) {
            let raw = self.blobs.get(&blob).ok_or_else(|| Failure(format!("unknown blob {blob:?}")))?;
            self.devices[d].store.blobs().put(raw).map_err(StoreError::from)?;
        }
        let now = self.device_now(d);
        let (report, _) = self.devices[d].store.ingest(now, events)?;
        self.rekeys += report.rekeys;
        self.dirty[d] = true;
        Ok(())
    }

    fn expose_all(&mut self, settled: bool) -> SimResult<()> {
        for d in 0..self.devices.len() {
            let hold = if !settled && self.net.has_peer(d) { HOLD_MS } else { 0 };
            let now = self.device_now(d);
            self.devices[d].store.set_exposure_hold_ms(hold);
            if !self.devices[d].store.expose(now, hold)?.mailboxes.is_empty() {
                self.dirty[d] = true;
            }
        }
        Ok(())
    }

    /// A crash: the write in progress is lost (not acknowledged), and so is
    /// everything on its way to the device and what it knew of its peers.
    fn crash(&mut self) -> SimResult<()> {
        let d = self.rng.gen_range(0..self.devices.len());
        self.crashes += 1;
        self.net.drop_to(d);
        let n = self.devices.len();
        self.devices[d].acked = vec![VersionVector::new(); n];
        self.devices[d].sent = vec![VersionVector::new(); n];
        let before = self.devices[d].store.state_digest()?;
        self.local_op_on(d, true)?;
        if self.devices[d].store.state_digest()? != before {
            return self.fail(format!("device {d}: a write lost to a crash left changes"));
        }
        Ok(())
    }

    /// A device folds what every peer has acknowledged to it (as far as it
    /// knows: nothing after a crash) into its log snapshot.
    fn compact(&mut self) -> SimResult<()> {
        let d = self.rng.gen_range(0..self.devices.len());
        let own = self.devices[d].store.version_vector()?;
        let peers = self.devices[d].acked.iter().enumerate().filter(|(p, _)| *p != d).map(|(_, v)| v);
        let stable = VersionVector::meet(std::iter::once(&own).chain(peers));
        let now = self.device_now(d);
        let report = self.devices[d].store.compact_within(now, &stable)?;
        if report.folded > 0 {
            self.compactions += 1;
            self.folded += report.folded;
            self.dirty[d] = true;
        }
        // Blob GC by the same vector (no draw of its own: seeds replay).
        self.collect_garbage(d, &stable)
    }

    /// Blob GC on device `d` within `stable`; every live entry's blob must
    /// still be stored after it.
    fn collect_garbage(&mut self, d: usize, stable: &VersionVector) -> SimResult<()> {
        self.blobs_collected += self.devices[d].store.collect_garbage_within(stable)?.blobs;
        for mailbox in self.mailboxes(d)? {
            for blob in self.devices[d].store.entry_blobs_all(mailbox.id)? {
                if !self.devices[d].store.has_blob(&blob)? {
                    return self.fail(format!("device {d}: blob GC removed the blob {blob:?} of a live entry"));
                }
            }
        }
        Ok(())
    }

    // --- local operations -------------------------------------------------------

    fn local_op(&mut self) -> SimResult<()> {
        let d = self.rng.gen_range(0..self.devices.len());
        self.local_op_on(d, false)
    }

    fn pick_op(&mut self) -> Op {
        let total: u32 = OPS.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.gen_range(0..total);
        for (op, w) in OPS {
            if roll < w {
                return op;
            }
            roll -= w;
        }
        Op::Append
    }

    fn new_message(&mut self) -> Vec<u8> {
        self.messages += 1;
        let raw = format!(
            "Message-ID: <{}.{}@sim>\r\nSubject: m{}\r\n\r\nbody {}\r\n",
            self.messages, self.step, self.messages, self.messages
        )
        .into_bytes();
        self.blobs.insert(BlobHash::of(&raw), raw.clone());
        raw
    }

    fn mailboxes(&self, d: usize) -> SimResult<Vec<MailboxInfo>> {
        Ok(self.devices[d].store.mailboxes(&self.user)?)
    }

    fn pick_mailbox(&mut self, d: usize) -> SimResult<Option<MailboxInfo>> {
        let boxes = self.mailboxes(d)?;
        Ok(boxes.choose(&mut self.rng).cloned())
    }

    fn pick_entries(&mut self, d: usize, mailbox: MailboxId, n: usize) -> SimResult<Vec<(EntryId, BlobHash)>> {
        let entries = self.devices[d].store.entries(mailbox)?;
        Ok(entries.choose_multiple(&mut self.rng, n).map(|e| (e.entry_id, e.blob)).collect())
    }

    /// Runs one write; with `crash` it is lost before it commits.
    fn write<T>(
        &mut self,
        d: usize,
        crash: bool,
        f: impl FnOnce(&mut Writer<'_>) -> StoreResult<T>,
    ) -> SimResult<Option<T>> {
        let now = self.device_now(d);
        let res = self.devices[d].store.write(now, |w| {
            let value = f(w)?;
            if crash {
                return Err(StoreError::Unsupported("simulated crash before commit"));
            }
            Ok(value)
        });
        match res {
            Ok((value, _)) => {
                self.ops_acked += 1;
                self.dirty[d] = true;
                // Live push: a commit goes out to every peer at once (DESIGN, Sync).
                for peer in 0..self.devices.len() {
                    if peer != d {
                        self.sync(d, peer, false)?;
                    }
                }
                Ok(Some(value))
            }
            // Refused requests (a name taken, a mailbox gone) and crashes: not acknowledged.
            Err(
                StoreError::Unsupported(_)
                | StoreError::NoSuchMailbox(_)
                | StoreError::MailboxExists(_)
                | StoreError::InboxProtected(_)
                | StoreError::InvalidName { .. },
            ) => Ok(None),
            Err(err) => self.fail(format!("device {d}: write failed: {err}")),
        }
    }

    fn local_op_on(&mut self, d: usize, crash: bool) -> SimResult<()> {
        let op = self.pick_op();
        let user = self.user.clone();
        match op {
            Op::Append => {
                let Some(mailbox) = self.pick_mailbox(d)? else { return Ok(()) };
                let raw = self.new_message();
                let flags = if self.rng.gen_bool(0.3) { vec![Flag::seen()] } else { Vec::new() };
                let msg = [AppendMessage { raw: &raw, flags, internal_date: 1_600_000_000 }];
                if self.write(d, crash, |w| w.append(mailbox.id, &msg))?.is_some() {
                    self.acked.insert(BlobHash::of(&raw));
                    self.entries_placed += 1;
                }
            }
            Op::DeliverTwice => {
                // The same message reaches two devices (two MX hosts).
                let raw = self.new_message();
                let other = (d + self.rng.gen_range(1..self.devices.len())) % self.devices.len();
                for target in [d, other] {
                    let Some(inbox) = self.devices[target].store.mailbox_by_name(&user, "INBOX")? else { continue };
                    let msg = [AppendMessage { raw: &raw, flags: Vec::new(), internal_date: 1_600_000_000 }];
                    if self.write(target, crash, |w| w.deliver(&user, inbox.id, &msg))?.is_some() {
                        self.acked.insert(BlobHash::of(&raw));
                        self.entries_placed += 1;
                    }
                }
            }
            Op::Flags => {
                let Some(mailbox) = self.pick_mailbox(d)? else { return Ok(()) };
                let all = self.devices[d].store.entries(mailbox.id)?;
                // Half the time the oldest few messages: flag changes of one
                // message on several devices at once are what add-wins is about.
                let pool = if self.rng.gen_bool(0.5) { &all[..all.len().min(3)] } else { &all[..] };
                let picked: Vec<(EntryId, ItemId, Vec<Flag>)> =
                    pool.choose_multiple(&mut self.rng, 2).map(|e| (e.entry_id, e.item_id, e.flags.clone())).collect();
                let entries: Vec<EntryId> = picked.iter().map(|p| p.0).collect();
                let every = [Flag::seen(), Flag::flagged(), Flag::answered(), Flag::deleted()];
                let flags: Vec<Flag> = every.iter().filter(|_| self.rng.gen_bool(0.4)).cloned().collect();
                let mode = [StoreMode::Add, StoreMode::Remove, StoreMode::Replace][self.rng.gen_range(0..3)];
                let change = FlagChange { mode, flags: flags.clone() };
                let seen = self.devices[d].store.version_vector()?;
                if self.write(d, crash, |w| w.store_flags(mailbox.id, &entries, &change))?.is_some() {
                    let own = self.devices[d].store.identity().id();
                    let event = EventId { origin: own, seq: self.devices[d].store.version_vector()?.get(&own) };
                    for (_, item, before) in picked {
                        for flag in &every {
                            let listed = flags.contains(flag);
                            // Only a flag that was unset gets a new instance for sure.
                            let adds = listed && !before.contains(flag) && mode != StoreMode::Remove;
                            let removes =
                                (listed && mode == StoreMode::Remove) || (!listed && mode == StoreMode::Replace);
                            if adds {
                                self.flags_added.push((item, flag.clone(), event));
                            }
                            if removes {
                                self.flags_removed.push((item, flag.clone(), seen.clone()));
                            }
                        }
                    }
                }
            }
            Op::Expunge => {
                let Some(mailbox) = self.pick_mailbox(d)? else { return Ok(()) };
                let picked = self.pick_entries(d, mailbox.id, 2)?;
                let entries: Vec<EntryId> = picked.iter().map(|e| e.0).collect();
                if self.write(d, crash, |w| w.expunge(mailbox.id, &entries))?.is_some() {
                    self.removed.extend(picked.iter().map(|e| e.1));
                }
            }
            Op::Move | Op::Copy => {
                let Some(source) = self.pick_mailbox(d)? else { return Ok(()) };
                let Some(target) = self.pick_mailbox(d)? else { return Ok(()) };
                if source.id == target.id {
                    return Ok(());
                }
                let entries: Vec<EntryId> = self.pick_entries(d, source.id, 2)?.into_iter().map(|e| e.0).collect();
                let res = if matches!(op, Op::Move) {
                    self.write(d, crash, |w| w.move_entries(source.id, &entries, target.id))?
                } else {
                    self.write(d, crash, |w| w.copy(source.id, &entries, target.id))?
                };
                if let Some(pairs) = res {
                    self.entries_placed += pairs.len() as u64;
                }
            }
            Op::Create => {
                let name = NAMES[self.rng.gen_range(0..NAMES.len())];
                self.write(d, crash, |w| w.create_mailbox(&user, name, None))?;
            }
            Op::Rename => {
                let Some(mailbox) = self.pick_mailbox(d)? else { return Ok(()) };
                if mailbox.name == "INBOX" {
                    return Ok(());
                }
                let to = NAMES[self.rng.gen_range(0..NAMES.len())];
                self.write(d, crash, |w| w.rename_mailbox(&user, &mailbox.name, to))?;
            }
            Op::Delete => {
                let Some(mailbox) = self.pick_mailbox(d)? else { return Ok(()) };
                // Held entries are observed by the delete too.
                let blobs = self.devices[d].store.entry_blobs_all(mailbox.id)?;
                if self.write(d, crash, |w| w.delete_mailbox(&user, &mailbox.name))?.is_some() {
                    self.removed.extend(blobs);
                }
            }
        }
        Ok(())
    }

    // --- checks -----------------------------------------------------------------

    fn resync_client(&mut self) -> SimResult<()> {
        let d = self.rng.gen_range(0..self.devices.len());
        let Some(mailbox) = self.pick_mailbox(d)? else { return Ok(()) };
        let index = match self.clients.iter().position(|c| c.device == d && c.mailbox == mailbox.id) {
            Some(i) => i,
            None => {
                self.clients.push(Client::new(d, mailbox.id));
                self.clients.len() - 1
            }
        };
        let problems = self.clients[index].resync(&self.devices[d].store)?;
        if let Some(p) = problems.into_iter().next() {
            return self.fail(p);
        }
        Ok(())
    }

    /// Whole-state invariants of every device that changed since the last check.
    fn check_invariants(&mut self) -> SimResult<()> {
        for d in 0..self.devices.len() {
            if !std::mem::take(&mut self.dirty[d]) {
                continue;
            }
            if let Some(p) = self.devices[d].store.check_invariants()?.into_iter().next() {
                return self.fail(format!("device {d}: {p}"));
            }
        }
        Ok(())
    }

    /// Heals the network and exchanges events until every device has every
    /// event (reliable delivery, as after a long enough retry).
    fn settle(&mut self) -> SimResult<()> {
        self.net.heal();
        let n = self.devices.len();
        for _round in 0..10_000 {
            let vvs: Vec<VersionVector> =
                self.devices.iter().map(|d| d.store.version_vector()).collect::<StoreResult<_>>()?;
            let pending: u64 = self.devices.iter().map(|d| d.store.pending_events()).sum::<StoreResult<u64>>()?;
            if vvs.iter().all(|v| *v == vvs[0]) && pending == 0 && self.net.idle() {
                return Ok(());
            }
            for a in 0..n {
                for (b, vv) in vvs.iter().enumerate() {
                    if a != b {
                        self.devices[a].acked[b] = vv.clone();
                        self.devices[a].sent[b] = vv.clone();
                        self.sync(a, b, true)?;
                    }
                }
            }
            while let Some(at) = self.net.next_arrival() {
                self.now_ms = self.now_ms.max(at);
                self.deliver_due(true)?;
            }
        }
        self.fail("devices did not settle".into())
    }

    /// A fresh device (slot 15, no RNG draw: the run's randomness is
    /// untouched) installs `donor`'s log snapshot, as the sync session does,
    /// then takes the events above it; it must end with `donor`'s digest and
    /// pass `verify` and the invariants.
    fn late_join(&mut self, donor: usize) -> SimResult<()> {
        let secret = *blake3::hash(&self.seed.to_le_bytes()).as_bytes();
        let slot = DeviceSlot::new(15).ok_or_else(|| Failure("slot".into()))?;
        let now = self.device_now(donor);
        let mut joiner = Store::in_memory(secret, slot, now)?;
        // As a daemon does while its peer is reachable: nothing is shown
        // before the catch-up is done (no time passes here).
        joiner.set_exposure_hold_ms(HOLD_MS);
        let Some((offer, image)) = self.devices[donor].store.snapshot_offer()? else {
            return self.fail(format!("device {donor} has no log snapshot to offer"));
        };
        joiner.snapshot_installable(&offer.vector)?;
        let snapshot = ReceivedSnapshot::check(offer, &image)?;
        for blob in snapshot.blobs()? {
            let raw = self.blobs.get(&blob).ok_or_else(|| Failure(format!("unknown blob {blob:?}")))?;
            joiner.blobs().put(raw).map_err(StoreError::from)?;
        }
        joiner.install_snapshot(snapshot, now)?;
        // Each round takes at least one event, so the log bounds the rounds.
        loop {
            let batch = self.devices[donor].store.events_missing(&joiner.version_vector()?, EVENTS_PER_PACKET)?;
            if batch.is_empty() {
                break;
            }
            for blob in batch.iter().flat_map(|e| e.op.blobs()) {
                let raw = self.blobs.get(&blob).ok_or_else(|| Failure(format!("unknown blob {blob:?}")))?;
                joiner.blobs().put(raw).map_err(StoreError::from)?;
            }
            joiner.ingest(now, &batch)?;
        }
        joiner.expose(now, 0)?;
        let (mine, theirs) = (joiner.state_digest()?, self.devices[donor].store.state_digest()?);
        if mine != theirs {
            return self.fail(format!("late joiner differs from device {donor}: {:?}", mine.differences(&theirs)));
        }
        let problems = joiner.verify()?.problems.into_iter().chain(joiner.check_invariants()?);
        if let Some(p) = problems.into_iter().next() {
            return self.fail(format!("late joiner from device {donor}: {p}"));
        }
        self.late_joins += 1;
        Ok(())
    }

    fn settle_and_check(&mut self) -> SimResult<()> {
        self.step = usize::MAX;
        self.settle()?;
        self.expose_all(true)?;
        self.dirty.iter_mut().for_each(|d| *d = true);
        self.check_invariants()?;
        // Every client resyncs on its device; then everything must agree.
        for i in 0..self.clients.len() {
            let d = self.clients[i].device;
            let problems = self.clients[i].resync(&self.devices[d].store)?;
            if let Some(p) = problems.into_iter().next() {
                return self.fail(p);
            }
        }
        let first = self.devices[0].store.state_digest()?;
        for (d, device) in self.devices.iter().enumerate().skip(1) {
            let digest = device.store.state_digest()?;
            if digest != first {
                return self
                    .fail(format!("device {d} did not converge with device 0: {:?}", digest.differences(&first)));
            }
        }
        for (d, device) in self.devices.iter().enumerate() {
            let report = device.store.verify()?;
            if let Some(p) = report.problems.first() {
                return self.fail(format!("device {d}: verify: {p}"));
            }
            if device.store.held_entries()? != 0 {
                return self.fail(format!("device {d}: entries still held after exposing everything"));
            }
        }
        // A device that compacted during the run has events above its
        // snapshot: a fresh device takes both.
        let donor = (self.seed % self.devices.len() as u64) as usize;
        if self.late_joiner && self.devices[donor].store.snapshot_vector()?.total() > 0 {
            self.late_join(donor)?;
        }
        // Folding the whole (now stable) log changes no state, and verify
        // from the snapshot still rebuilds it.
        for d in 0..self.devices.len() {
            let before = self.devices[d].store.state_digest()?;
            let all = self.devices[d].store.version_vector()?;
            let now = self.device_now(d);
            let report = self.devices[d].store.compact_within(now, &all)?;
            self.folded += report.folded;
            if report.remaining != 0 || self.devices[d].store.state_digest()? != before {
                return self.fail(format!("device {d}: compacting the settled log changed it: {report:?}"));
            }
            if let Some(p) = self.devices[d].store.verify()?.problems.first() {
                return self.fail(format!("device {d}: verify after compaction: {p}"));
            }
            // Everything is stable: every unreferenced blob goes, nothing else.
            self.collect_garbage(d, &all)?;
            if self.devices[d].store.state_digest()? != before {
                return self.fail(format!("device {d}: blob GC changed the state"));
            }
            if let Some(p) = self.devices[d].store.verify()?.problems.first() {
                return self.fail(format!("device {d}: verify after blob GC: {p}"));
            }
        }
        if self.late_joiner {
            self.late_join(donor)?;
        }
        // Nothing acknowledged is lost unless an acknowledged removal took it.
        let mut present = BTreeSet::new();
        for mailbox in self.mailboxes(0)? {
            present.extend(self.devices[0].store.entries(mailbox.id)?.into_iter().map(|e| e.blob));
        }
        if let Some(lost) = self.acked.iter().find(|b| !self.removed.contains(b) && !present.contains(b)) {
            return self.fail(format!("acknowledged message {lost:?} is lost"));
        }
        // A flag an acknowledged STORE set, which no STORE ever removed, is set
        // on every live entry of its item.
        let mut live: BTreeMap<ItemId, Vec<Vec<Flag>>> = BTreeMap::new();
        for mailbox in self.mailboxes(0)? {
            for entry in self.devices[0].store.entries(mailbox.id)? {
                live.entry(entry.item_id).or_default().push(entry.flags);
            }
        }
        for (item, flag, event) in &self.flags_added {
            let observed =
                self.flags_removed.iter().any(|(i, f, seen)| i == item && f == flag && seen.contains(*event));
            if observed {
                continue;
            }
            for flags in live.get(item).into_iter().flatten() {
                if !flags.contains(flag) {
                    return self.fail(format!("flag {flag} set on {item:?} by an acknowledged STORE is lost"));
                }
            }
        }
        Ok(())
    }
}
