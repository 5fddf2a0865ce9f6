-- LOCAL: conflicts the merge resolved on this device (issue 9), recorded by
-- the rule that decided, in the transaction that applied the event. Not
-- replicated and not in the state digest: each device notes a conflict when
-- the second of its sides arrives here, which depends on arrival order.
-- `other_*` is the other side's event when known (origin x'' / seq 0: not
-- known), kept NOT NULL so the UNIQUE key also deduplicates those rows.
CREATE TABLE conflicts (
    id            INTEGER PRIMARY KEY,
    kind          TEXT    NOT NULL,
    recorded_ms   INTEGER NOT NULL,
    mailbox_id    INTEGER NOT NULL,
    event_origin  BLOB    NOT NULL,
    event_seq     INTEGER NOT NULL,
    other_origin  BLOB    NOT NULL,
    other_seq     INTEGER NOT NULL,
    resolution    TEXT    NOT NULL,
    UNIQUE (kind, mailbox_id, event_origin, event_seq, other_origin, other_seq)
) STRICT;
