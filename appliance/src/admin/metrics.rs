//! Prometheus text exposition (version 0.0.4) for `/metrics`: per peer its
//! connection state, events behind each way, lag and bytes moved (from
//! `ops::peer_views`, i.e. `Store::peers()`), and the store's counts and sizes.

use std::fmt::Write;

use roost_core::store::StoreStats;

use crate::ops::PeerView;

/// Renders the metrics page.
pub fn render(peers: &[PeerView], stats: &StoreStats) -> String {
    let mut out = String::new();
    let gauge = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    let counter = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    };
    let label = |p: &PeerView| format!("peer=\"{}\",name=\"{}\"", p.device_id, escape(&p.name));

    gauge(&mut out, "roost_peer_connected", "1 while a sync session with the peer is up.");
    for p in peers {
        let _ = writeln!(out, "roost_peer_connected{{{}}} {}", label(p), u8::from(p.connected));
    }
    gauge(&mut out, "roost_peer_events_behind", "Events one side has that the other has not acknowledged.");
    for p in peers {
        let _ = writeln!(out, "roost_peer_events_behind{{{},direction=\"to_peer\"}} {}", label(p), p.events_they_lack);
        let _ = writeln!(out, "roost_peer_events_behind{{{},direction=\"from_peer\"}} {}", label(p), p.events_we_lack);
    }
    gauge(&mut out, "roost_peer_lag_seconds", "Last measured replication lag.");
    for p in peers {
        if let Some(ms) = p.lag_ms {
            let _ = writeln!(out, "roost_peer_lag_seconds{{{}}} {}", label(p), ms as f64 / 1000.0);
        }
    }
    gauge(&mut out, "roost_peer_last_seen_timestamp_seconds", "Last frame received from the peer.");
    for p in peers {
        if let Some(ms) = p.last_seen_ms {
            let _ = writeln!(out, "roost_peer_last_seen_timestamp_seconds{{{}}} {}", label(p), ms / 1000);
        }
    }
    counter(&mut out, "roost_peer_sent_bytes_total", "Bytes sent to the peer.");
    for p in peers {
        let _ = writeln!(out, "roost_peer_sent_bytes_total{{{}}} {}", label(p), p.bytes_sent);
    }
    counter(&mut out, "roost_peer_received_bytes_total", "Bytes received from the peer.");
    for p in peers {
        let _ = writeln!(out, "roost_peer_received_bytes_total{{{}}} {}", label(p), p.bytes_received);
    }
    for (name, help, value) in [
        ("roost_users", "Users.", stats.users),
        ("roost_mailboxes", "Live mailboxes.", stats.mailboxes),
        ("roost_mailbox_entries", "Messages in mailboxes.", stats.entries),
        ("roost_messages", "Stored messages.", stats.messages),
        ("roost_events", "Events in the log.", stats.events),
    ] {
        gauge(&mut out, name, help);
        let _ = writeln!(out, "{name} {value}");
    }
    gauge(&mut out, "roost_storage_bytes", "Bytes on disk.");
    let _ = writeln!(out, "roost_storage_bytes{{kind=\"database\"}} {}", stats.db_bytes);
    let _ = writeln!(out, "roost_storage_bytes{{kind=\"blobs\"}} {}", stats.blob_bytes);
    out
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use roost_core::model::DeviceId;

    // A peer's name with quotes cannot break the exposition format.
    #[test]
    fn renders_peers_and_counts() {
        let peer = PeerView {
            device_id: DeviceId::from_bytes([7; 32]),
            name: "pi \"attic\"".into(),
            addrs: vec![],
            slot: 1,
            paired_ms: 0,
            connected: true,
            last_seen_ms: Some(5_000),
            events_they_lack: 3,
            events_we_lack: 0,
            lag_ms: Some(250),
            bytes_sent: 10,
            bytes_received: 20,
            snapshot_refused: None,
        };
        let stats =
            StoreStats { users: 2, mailboxes: 12, entries: 5, messages: 4, events: 30, blob_bytes: 9, db_bytes: 8 };
        let text = render(&[peer], &stats);
        assert!(text.contains("name=\"pi \\\"attic\\\"\""), "{text}");
        assert!(text.contains("direction=\"to_peer\"} 3"), "{text}");
        assert!(text.contains("roost_peer_lag_seconds{"), "{text}");
        assert!(text.contains("} 0.25\n"), "{text}");
        assert!(text.contains("roost_users 2\n"), "{text}");
        assert!(text.contains("roost_storage_bytes{kind=\"blobs\"} 9\n"), "{text}");
    }
}
