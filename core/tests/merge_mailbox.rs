//! Mailbox merge rules: concurrent CREATE of one name, RENAME as a
//! last-writer-wins register with a visible suffix on a clash, DELETE against
//! a concurrent APPEND (the message survives, visible), and UIDVALIDITY.

mod merge_support;

use merge_support::{alice, Cluster};

#[test]
fn concurrent_create_of_one_name_gives_one_mailbox() {
    // Both devices create "Work" while apart: after sync there is one "Work"
    // with one id and one UIDVALIDITY, holding both devices' messages.
    let mut c = Cluster::new(2);
    c.write(0, |w| w.create_mailbox(&alice(), "Work", None));
    c.write(1, |w| w.create_mailbox(&alice(), "Work", None));
    c.append(0, "Work", "a", vec![]);
    c.append(1, "Work", "b", vec![]);
    let v0 = c.mailbox(0, "Work").uid_validity;
    c.sync_all();
    c.assert_converged();
    assert_eq!(c.names(0).iter().filter(|n| n.starts_with("Work")).count(), 1);
    assert_eq!(c.mailbox(1, "Work").uid_validity, v0);
    assert_eq!(c.entries(0, "Work").len(), 2);
}

#[test]
fn concurrent_renames_last_writer_wins() {
    // Device 0 renames Archive to Old, device 1 later (by HLC) to Past: Past wins everywhere.
    let mut c = Cluster::new(2);
    c.write(0, |w| w.rename_mailbox(&alice(), "Archive", "Old"));
    c.tick(10);
    c.write(1, |w| w.rename_mailbox(&alice(), "Archive", "Past"));
    c.sync_all();
    c.assert_converged();
    for d in 0..2 {
        let names = c.names(d);
        assert!(names.contains(&"Past".to_string()), "{names:?}");
        assert!(!names.contains(&"Old".to_string()), "{names:?}");
    }
}

#[test]
fn rename_onto_a_concurrently_created_name_shows_a_suffix_not_an_overwrite() {
    // Device 0 creates "Projects" with a message; device 1 renames Archive to
    // "Projects" meanwhile. Both mailboxes stay, one shown with a suffix,
    // the same on both devices; nothing is merged or hidden.
    let mut c = Cluster::new(2);
    c.write(0, |w| w.create_mailbox(&alice(), "Projects", None));
    c.append(0, "Projects", "p", vec![]);
    c.append(1, "Archive", "a", vec![]);
    c.tick(10);
    c.write(1, |w| w.rename_mailbox(&alice(), "Archive", "Projects"));
    c.sync_all();
    c.assert_converged();
    let names = c.names(0);
    assert_eq!(names, c.names(1));
    let projects: Vec<&String> = names.iter().filter(|n| n.starts_with("Projects")).collect();
    assert_eq!(projects.len(), 2, "{names:?}");
    assert!(projects.iter().any(|n| n.as_str() == "Projects"));
    let suffixed = projects.iter().find(|n| n.as_str() != "Projects").unwrap();
    assert!(suffixed.starts_with("Projects~"), "{suffixed}");
    // Every shown name finds the mailbox shown under it: the one-row lookup
    // of an unshared name and the suffix rule for shared ones agree.
    for d in 0..2 {
        for info in c.devices[d].mailboxes(&alice()).unwrap() {
            let found = c.devices[d].mailbox_by_name(&alice(), &info.name).unwrap().map(|m| (m.id, m.name));
            assert_eq!(found, Some((info.id, info.name.clone())));
        }
    }
    // The first holder of the name keeps it: device 0's create came first.
    assert_eq!(c.entries(0, "Projects").len(), 1);
    assert_eq!(c.entries(0, suffixed).len(), 1);
    // The suffixed name is usable: it can be renamed away by the user.
    let suffixed = suffixed.to_string();
    c.write(0, |w| w.rename_mailbox(&alice(), &suffixed, "Projects-old"));
    c.sync_all();
    c.assert_converged();
    assert!(c.names(1).contains(&"Projects-old".to_string()));
}

#[test]
fn delete_vs_concurrent_append_keeps_the_appended_message_visible() {
    // Device 0 deletes Work (with the message it saw); device 1 appends to
    // Work meanwhile. The new message survives on both, visible, and the
    // message device 0 saw is gone.
    let mut c = Cluster::new(2);
    c.write(0, |w| w.create_mailbox(&alice(), "Work", None));
    c.append(0, "Work", "seen", vec![]);
    c.sync_all();
    c.write(0, |w| w.delete_mailbox(&alice(), "Work"));
    c.append(1, "Work", "concurrent", vec![]);
    c.sync_all();
    c.assert_converged();
    for d in 0..2 {
        let entries = c.entries(d, "Work");
        assert_eq!(entries.len(), 1, "device {d}");
        let raw = c.devices[d].message(&entries[0].blob).unwrap();
        assert!(String::from_utf8_lossy(&raw).contains("concurrent"));
    }
}

#[test]
fn delete_without_concurrent_append_removes_everywhere_and_recreate_gets_new_uidvalidity() {
    // A delete seen everywhere removes the mailbox; creating the name again
    // gives a new mailbox with a greater UIDVALIDITY (RFC 9051 2.3.1.1).
    let mut c = Cluster::new(2);
    c.write(0, |w| w.create_mailbox(&alice(), "Work", None));
    c.append(0, "Work", "a", vec![]);
    c.sync_all();
    let old = c.mailbox(1, "Work");
    c.write(1, |w| w.delete_mailbox(&alice(), "Work"));
    c.sync_all();
    c.assert_converged();
    assert!(!c.names(0).contains(&"Work".to_string()));
    c.write(0, |w| w.create_mailbox(&alice(), "Work", None));
    c.sync_all();
    c.assert_converged();
    let new = c.mailbox(1, "Work");
    assert_ne!(new.id, old.id);
    assert!(old.uid_validity < new.uid_validity);
    assert!(c.entries(1, "Work").is_empty());
}
