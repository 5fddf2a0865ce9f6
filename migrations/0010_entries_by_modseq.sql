-- IMAP sessions catch up from the MODSEQ they last saw (entries changed
-- since, plus tombstones) instead of re-reading the whole mailbox: this
-- index makes that a range scan of the changes only.
CREATE INDEX mailbox_entries_by_modseq ON mailbox_entries (mailbox_id, modseq);
