#!/usr/bin/env bash
# The .deb's life on a real Debian system, as root: install, run, upgrade with
# a migration, remove, purge. Run by test.sh (CI) and before a release.
#
#   packaging/scripts/deb-install-test.sh
#
# ROOST_DEB_PROFILE=release tests the release build (a cold LTO build: several
# minutes); the default, dev, packages the debug build `cargo test` already
# made, which exercises the same package, unit and maintainer scripts.
# IMAP must answer after every start (doctor's listener check, then the
# greeting itself); there is no opt-out.
#
# systemd is not PID 1 on CI machines, so the unit is checked with
# `systemd-analyze verify` and its ExecStart line is started by hand as the
# `roost` user; the hardening options themselves only take effect under systemd.
set -euo pipefail
cd "$(dirname "$0")/../.."

[ "$(id -u)" = 0 ] || { echo "deb-install-test.sh: must run as root (dpkg -i)" >&2; exit 1; }

profile="${ROOST_DEB_PROFILE:-dev}"
target_dir="${CARGO_TARGET_DIR:-target}"
work="$target_dir/deb-install-test"
rm -rf "$work"
mkdir -p "$work"
work="$(cd "$work" && pwd)"

step() { echo "--- deb-install-test: $*"; }
fail() { echo "deb-install-test: FAIL: $*" >&2; exit 1; }
started=$SECONDS
timing() { echo "--- deb-install-test: $1 took $((SECONDS - $2)) s"; }

# A leftover from an earlier failed run would make every check below lie.
if dpkg-query -W roost >/dev/null 2>&1; then
  step "purging a roost package left from an earlier run"
  dpkg --purge roost >/dev/null
fi
rm -rf /var/lib/roost /etc/roost

t=$SECONDS
step "building v1 and v2 (v2 = one more migration) with profile $profile"
deb_v1=$(packaging/scripts/build-deb.sh --profile "$profile" --out "$work/v1" | tail -n 1)
deb_v2=$(packaging/scripts/build-deb.sh --profile "$profile" --features upgrade-test-migration \
  --deb-revision 2 --out "$work/v2" | tail -n 1)
timing "building both packages" $t

# --- Install ---------------------------------------------------------------
t=$SECONDS
step "dpkg -i $deb_v1"
dpkg -i "$deb_v1"
unit=$(dpkg -L roost | grep '/systemd/system/roost.service$') || fail "no roost.service in the package"
for f in /usr/bin/roost /etc/roost/roost.toml /usr/share/man/man1/roost.1.gz \
  /usr/share/bash-completion/completions/roost /usr/share/zsh/vendor-completions/_roost \
  /usr/share/fish/vendor_completions.d/roost.fish /usr/share/doc/roost/examples/low-ports.conf; do
  [ -e "$f" ] || fail "$f not installed"
done
dpkg-query -W -f='${Conffiles}\n' roost | grep -q '/etc/roost/roost.toml' || fail "/etc/roost/roost.toml is not a conffile"
getent passwd roost >/dev/null || fail "postinst did not create the roost user"
[ "$(stat -c '%U %a' /var/lib/roost)" = "roost 700" ] || fail "/var/lib/roost is $(stat -c '%U %a' /var/lib/roost), want roost 700"
[ -e /var/lib/roost/roost.db ] || fail "postinst did not initialise /var/lib/roost"
[ "$(stat -c '%U %a' /var/lib/roost/device.key)" = "roost 600" ] || fail "device key is $(stat -c '%U %a' /var/lib/roost/device.key)"
man -l /usr/share/man/man1/roost.1.gz 2>/dev/null | grep -q "roost-doctor\|doctor" || fail "the man page does not list the subcommands"
bash -c 'source /usr/share/bash-completion/completions/roost && complete -p roost' >/dev/null || fail "bash completion does not load"

step "systemd-analyze verify $unit"
# --man=no: the man page is checked above; systemd's check shells out to man(1)
# with a section syntax that fails on a non-systemd machine.
systemd-analyze verify --man=no "$unit"
timing "install and static checks" $t

# --- Run the packaged command line as the roost user -------------------------
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[ -n "$exec_start" ] || fail "no ExecStart in $unit"
as_roost() { runuser -u roost -- "$@"; }
roost_cmd() { as_roost /usr/bin/roost --config /etc/roost/roost.toml "$@"; }
daemon_pid=""
notify_sock=/run/roost-deb-install-test.notify
start_daemon() {
  step "starting ExecStart by hand as roost: $exec_start"
  # Readiness the way systemd sees it (Type=notify): a datagram socket of our
  # own as NOTIFY_SOCKET, and wait for READY=1.
  rm -f "$notify_sock"
  python3 - "$notify_sock" >"$work/notify.log" 2>&1 <<'EOF_PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
s.settimeout(30)
while b"READY=1" not in s.recv(4096):
    pass
print("READY=1")
EOF_PY
  local listener=$!
  for _ in $(seq 1 50); do [ -S "$notify_sock" ] && break; sleep 0.1; done
  # setpriv execs in place (runuser forks and would be the pid we signal).
  (cd / && NOTIFY_SOCKET="$notify_sock" exec setpriv --reuid=roost --regid=roost --init-groups -- $exec_start) \
    >"$work/daemon.log" 2>&1 &
  daemon_pid=$!
  if ! wait "$listener"; then
    cat "$work/daemon.log"
    fail "the daemon did not send READY=1 within 30 s"
  fi
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/daemon.log"; fail "the daemon exited after READY=1"; }
}
stop_daemon() {
  kill -TERM "$daemon_pid"
  wait "$daemon_pid" || { cat "$work/daemon.log"; fail "the daemon exited non-zero on SIGTERM"; }
  daemon_pid=""
}
trap '[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null; rm -f "$notify_sock"; true' EXIT

check_imap() {
  local port
  local report
  # Captured first: `grep -q` would close the pipe while doctor still prints.
  report=$(roost_cmd doctor) || true
  grep -q '^ok    imap listener' <<<"$report" || fail "doctor does not find the IMAP listener accepting connections: $report"
  # The port doctor found IMAP on (roost.toml has other `listen =` lines).
  port=$(sed -n 's/^ok    imap listener *127\.0\.0\.1:\([0-9]*\) .*/\1/p' <<<"$report" | head -n 1)
  [ -n "$port" ] || fail "doctor names no loopback IMAP port: $report"
  python3 - "$port" <<'EOF' || fail "IMAP on 127.0.0.1 does not greet"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
greeting = s.recv(512)
print("IMAP greeting:", greeting.decode(errors="replace").strip())
sys.exit(0 if greeting.startswith(b"* OK") else 1)
EOF
}

t=$SECONDS
# The packaged sync port 7947 may be taken on a shared build machine, and tests
# stay on loopback: this admin-style edit moves sync to a free loopback port,
# inside [sync] (the packaged file
# has tables after it, such as [admin]), and the upgrade below must keep it.
grep -q '^\[sync\]$' /etc/roost/roost.toml || fail "roost.toml has no [sync] table"
sync_port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -i "/^\[sync\]\$/a listen = [\"127.0.0.1:$sync_port\"]" /etc/roost/roost.toml
start_daemon
step "roost doctor on the running packaged service"
roost_cmd doctor || fail "doctor finds problems on a fresh install"
check_imap
step "adding a user while the daemon runs; SIGHUP must not stop it"
echo "a fine passphrase" | roost_cmd user add alice --password-stdin
kill -HUP "$daemon_pid"
sleep 0.5
kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/daemon.log"; fail "SIGHUP stopped the daemon"; }
grep -q "SIGHUP: reloaded the TLS certificate" "$work/daemon.log" || fail "SIGHUP did not reload the TLS certificate"
# Everything but the storage line, which moves with WAL checkpoints.
roost_cmd status | grep -v '^storage' >"$work/status-before"
stop_daemon
# An admin's edit of the conffile must survive the upgrade.
echo "# edited by the admin" >>/etc/roost/roost.toml
timing "run, doctor, user add" $t

# --- Upgrade to v2, which has one more migration ----------------------------
t=$SECONDS
db_version() {
  python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("PRAGMA user_version").fetchone()[0])' \
    /var/lib/roost/roost.db
}
version_before=$(db_version)
step "dpkg -i $deb_v2 (schema version before: $version_before)"
dpkg -i "$deb_v2"
version_after=$(db_version)
[ "$version_after" = $((version_before + 1)) ] || fail "schema version $version_after after the upgrade, want $((version_before + 1))"
python3 -c 'import sqlite3,sys; r=sqlite3.connect(sys.argv[1]).execute("SELECT note FROM packaging_upgrade_probe").fetchone(); sys.exit(0 if r else 1)' \
  /var/lib/roost/roost.db || fail "the test migration's row is missing"
grep -q "# edited by the admin" /etc/roost/roost.toml || fail "the upgrade replaced the edited conffile"
grep -q "127.0.0.1:$sync_port" /etc/roost/roost.toml || fail "the upgrade lost the admin's [sync] listen edit"
[ "$(stat -c '%U' /var/lib/roost/roost.db)" = roost ] || fail "the upgrade left roost.db owned by $(stat -c '%U' /var/lib/roost/roost.db)"
roost_cmd user list | grep -q '^alice' || fail "user alice is gone after the upgrade"
roost_cmd status | grep -v '^storage' >"$work/status-after"
diff -u "$work/status-before" "$work/status-after" || fail "status changed across the upgrade"
roost_cmd verify || fail "verify fails after the upgrade"
start_daemon
roost_cmd doctor || fail "doctor finds problems after the upgrade"
check_imap
stop_daemon
timing "upgrade" $t

# --- Remove keeps data and config; purge deletes them ------------------------
t=$SECONDS
step "dpkg -r roost"
dpkg -r roost
[ ! -e /usr/bin/roost ] || fail "remove left /usr/bin/roost"
[ ! -e "$unit" ] || fail "remove left $unit"
[ -e /var/lib/roost/roost.db ] || fail "remove deleted the data"
[ -e /etc/roost/roost.toml ] || fail "remove deleted the conffile"
step "dpkg --purge roost"
dpkg --purge roost
[ ! -e /var/lib/roost ] || fail "purge left /var/lib/roost"
[ ! -e /etc/roost ] || fail "purge left /etc/roost"
[ ! -e /etc/systemd/system/multi-user.target.wants/roost.service ] || fail "purge left the unit enabled"
dpkg-query -W roost >/dev/null 2>&1 && [ "$(dpkg-query -W -f='${Status}' roost)" != "unknown ok not-installed" ] &&
  fail "dpkg still knows roost: $(dpkg-query -W -f='${Status}' roost)"
getent passwd roost >/dev/null && echo "--- deb-install-test: the roost system user stays after purge (Debian policy)"
timing "remove and purge" $t

echo "deb-install-test: ok ($((SECONDS - started)) s in all)"
