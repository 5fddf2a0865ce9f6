-- Roost schema, version 13: the live mailboxes of a user, by name.
-- Append-only.
--
-- A deleted mailbox keeps its row (merges of a concurrent append or rename
-- need it), so after a thousand CREATE/DELETE the index on (user, name) led
-- every mailbox lookup - each SELECT, STATUS, LIST - through a thousand dead
-- rows, each a table lookup to read `deleted`: 0.33 ms of a 0.55 ms STATUS
-- (docs/benchmarks.md). The partial index holds only the live ones and
-- answers `WHERE user = ? AND deleted = 0 ORDER BY name, id` in index order.
-- It replaces the full one, so the planner cannot pick that instead; the
-- one query that wants deleted mailboxes too (a user's removal) scans.
DROP INDEX IF EXISTS mailboxes_by_user_name;
CREATE INDEX mailboxes_live_by_user_name ON mailboxes (user, name, id) WHERE deleted = 0;
