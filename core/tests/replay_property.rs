//! Property: any random sequence of local operations, replayed from the event
//! log alone into an empty database, reproduces the identical materialised
//! state (`verify` compares per-table digests), and the store's invariants
//! hold throughout. Operations that a client could get refused (a name taken,
//! a mailbox missing) are part of the mix: a refused write must leave nothing.

use proptest::prelude::*;

use roost_core::model::{DeviceSlot, Flag, UserName};
use roost_core::store::{AppendMessage, FlagChange, Store, StoreMode};

const NAMES: [&str; 6] = ["INBOX", "Archive", "Lists", "Lists/rust", "Trash", "Work/Old"];
const USERS: [&str; 2] = ["alice", "bob"];

#[derive(Debug, Clone)]
enum Op {
    AddUser(usize),
    RemoveUser(usize),
    Password(usize),
    Create(usize, usize),
    Rename(usize, usize, usize),
    Delete(usize, usize),
    Subscribe(usize, usize, bool),
    Append(usize, usize, u8),
    Flags(usize, usize, usize, u8, u8),
    Expunge(usize, usize, usize),
    Copy(usize, usize, usize, usize),
    Move(usize, usize, usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let u = 0..USERS.len();
    let n = 0..NAMES.len();
    prop_oneof![
        1 => u.clone().prop_map(Op::AddUser),
        1 => u.clone().prop_map(Op::RemoveUser),
        1 => u.clone().prop_map(Op::Password),
        3 => (u.clone(), n.clone()).prop_map(|(u, n)| Op::Create(u, n)),
        2 => (u.clone(), n.clone(), n.clone()).prop_map(|(u, a, b)| Op::Rename(u, a, b)),
        2 => (u.clone(), n.clone()).prop_map(|(u, n)| Op::Delete(u, n)),
        1 => (u.clone(), n.clone(), any::<bool>()).prop_map(|(u, n, s)| Op::Subscribe(u, n, s)),
        8 => (u.clone(), n.clone(), any::<u8>()).prop_map(|(u, n, f)| Op::Append(u, n, f)),
        6 => (u.clone(), n.clone(), 0..8usize, 0..3u8, any::<u8>()).prop_map(|(u, n, e, m, f)| Op::Flags(u, n, e, m, f)),
        3 => (u.clone(), n.clone(), 0..8usize).prop_map(|(u, n, e)| Op::Expunge(u, n, e)),
        2 => (u.clone(), n.clone(), 0..8usize, n.clone()).prop_map(|(u, a, e, b)| Op::Copy(u, a, e, b)),
        3 => (u, n.clone(), 0..8usize, n).prop_map(|(u, a, e, b)| Op::Move(u, a, e, b)),
    ]
}

fn flags(mask: u8) -> Vec<Flag> {
    let all = [Flag::seen(), Flag::flagged(), Flag::answered(), Flag::deleted(), Flag::parse("$Label1").unwrap()];
    all.into_iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, f)| f).collect()
}

fn run(store: &mut Store, op: &Op, step: u64) {
    let now = 1_700_000_000_000 + step * 1_000;
    let user = |i: usize| UserName::new(USERS[i]).unwrap();
    // The outcome of each op is either a commit or a refusal; both are fine here.
    let _ = match op.clone() {
        Op::AddUser(u) => store.write(now, |w| w.add_user(&user(u), "hash")).map(drop),
        Op::RemoveUser(u) => store.write(now, |w| w.remove_user(&user(u))).map(drop),
        Op::Password(u) => store.write(now, |w| w.set_password(&user(u), &format!("hash{step}"))).map(drop),
        Op::Create(u, n) => store.write(now, |w| w.create_mailbox(&user(u), NAMES[n], None)).map(drop),
        Op::Rename(u, a, b) => store.write(now, |w| w.rename_mailbox(&user(u), NAMES[a], NAMES[b])).map(drop),
        Op::Delete(u, n) => store.write(now, |w| w.delete_mailbox(&user(u), NAMES[n])).map(drop),
        Op::Subscribe(u, n, s) => store.write(now, |w| w.subscribe(&user(u), NAMES[n], s)).map(drop),
        Op::Append(u, n, f) => {
            let raw = format!("Subject: {}\r\n\r\nstep {step}\r\n", f % 4).into_bytes();
            store
                .write(now, |w| {
                    let mailbox = w.mailbox(&user(u), NAMES[n])?;
                    w.append(mailbox, &[AppendMessage { raw: &raw, flags: flags(f), internal_date: step as i64 }])
                })
                .map(drop)
        }
        Op::Flags(u, n, e, mode, f) => {
            let mode = [StoreMode::Add, StoreMode::Remove, StoreMode::Replace][mode as usize];
            with_entry(store, u, n, e, |store, mailbox, entry| {
                store.write(now, |w| w.store_flags(mailbox, &[entry], &FlagChange { mode, flags: flags(f) })).map(drop)
            })
        }
        Op::Expunge(u, n, e) => with_entry(store, u, n, e, |store, mailbox, entry| {
            store.write(now, |w| w.expunge(mailbox, &[entry])).map(drop)
        }),
        Op::Copy(u, a, e, b) | Op::Move(u, a, e, b) => {
            let is_move = matches!(op, Op::Move(..));
            with_entry(store, u, a, e, |store, mailbox, entry| {
                store
                    .write(now, |w| {
                        let target = w.mailbox(&user(u), NAMES[b])?;
                        if is_move {
                            w.move_entries(mailbox, &[entry], target)
                        } else {
                            w.copy(mailbox, &[entry], target)
                        }
                    })
                    .map(drop)
            })
        }
    };
}

fn with_entry<F>(store: &mut Store, u: usize, n: usize, e: usize, f: F) -> Result<(), roost_core::store::StoreError>
where
    F: FnOnce(
        &mut Store,
        roost_core::model::MailboxId,
        roost_core::model::EntryId,
    ) -> Result<(), roost_core::store::StoreError>,
{
    let user = UserName::new(USERS[u]).unwrap();
    let Some(mailbox) = store.mailbox_by_name(&user, NAMES[n])? else { return Ok(()) };
    let entries = store.entries(mailbox.id)?;
    if entries.is_empty() {
        return Ok(());
    }
    let entry = entries[e % entries.len()].entry_id;
    f(store, mailbox.id, entry)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn replay_of_the_log_reproduces_the_state(ops in prop::collection::vec(op(), 1..60)) {
        let mut store = Store::in_memory([3; 32], DeviceSlot::new(2).unwrap(), 1_700_000_000_000).unwrap();
        store.write(1_700_000_000_000, |w| w.add_user(&UserName::new("alice").unwrap(), "hash")).unwrap();
        for (step, op) in ops.iter().enumerate() {
            run(&mut store, op, step as u64);
        }
        let report = store.verify().unwrap();
        prop_assert!(report.problems.is_empty(), "problems: {:?}", report.problems);
        prop_assert_eq!(report.live, report.rebuilt);
    }
}
