-- Test-only migration, compiled in only with the roost-core feature
-- `upgrade-test-migration`. packaging/scripts/deb-install-test.sh installs a
-- normal package, then upgrades to one built with this feature, and checks that
-- the upgrade applied this migration (this table exists with its row) while
-- users and mail in the existing tables survived. Never part of a release.
CREATE TABLE packaging_upgrade_probe (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    note  TEXT    NOT NULL
) STRICT;
INSERT INTO packaging_upgrade_probe (id, note) VALUES (1, 'applied by the package upgrade');
