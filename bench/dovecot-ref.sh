#!/usr/bin/env bash
# dovecot-ref.sh — install / start / stop a private reference Dovecot
# (Debian's dovecot-imapd + dovecot-lmtpd) for Roost benchmarks.
#
#   dovecot-ref.sh install
#   dovecot-ref.sh start  DIR IMAP_PORT LMTP_PORT USER PASSWORD   # prints master PID
#   dovecot-ref.sh stop   DIR
#   dovecot-ref.sh status DIR                                     # exit 0 if running
#
# The instance is self-contained: config, passwd-file, sockets (base_dir),
# state_dir, log and maildirs all live under DIR. Nothing in /etc/dovecot,
# /run/dovecot or /var/lib/dovecot is read or written by a started instance.
#
# Privileges: Dovecot runs "rootless" — master and every child process run as
# one unprivileged uid. If the script is invoked by a non-root user, that user
# is used. If invoked as root, a dedicated system user (default
# "roost-dovecot", override with DOVECOT_REF_RUN_USER) is created on demand
# and the instance is launched as that user via setpriv.
#
# Environment knobs (all optional):
#   DOVECOT_REF_RUN_USER     user to run as when invoked as root (default roost-dovecot)
#   DOVECOT_REF_PW_SCHEME    PLAIN (default) or any `doveadm pw -s` scheme,
#                            e.g. SHA512-CRYPT / ARGON2ID (changes LOGIN cost!)
#   DOVECOT_REF_PROC_LIMIT   process_limit for imap/imap-login/lmtp (default 1024)
#   DOVECOT_REF_LOGIN_MODE   secure (default: Dovecot's default "high-security"
#                            login, one imap-login process per connection) or
#                            performance (service_count=0, process_min_avail=2:
#                            a few long-lived imap-login processes)
#   DOVECOT_REF_MAIL_FSYNC   optimized (default, Dovecot's own default) or always:
#                            fsync after every write, index log included, so a
#                            flag change is on disk before STORE is answered
#                            (what Roost guarantees; the like-for-like reference)
#   DOVECOT_REF_START_TIMEOUT seconds to wait for both ports (default 20)
#   DOVECOT_REF_STOP_TIMEOUT  seconds to wait for master exit (default 20)
set -euo pipefail

PROG=${0##*/}
PKGS=(dovecot-core dovecot-imapd dovecot-lmtpd)
RUN_USER_DEFAULT=${DOVECOT_REF_RUN_USER:-roost-dovecot}

die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { echo "$PROG: $*" >&2; }

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# ---------------------------------------------------------------- install
pkgs_installed() {
  local p st
  for p in "${PKGS[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    [[ $st == ii* ]] || return 1
  done
}

# Debian's dovecot-core postinst runs `update-rc.d dovecot defaults` and
# `invoke-rc.d dovecot start` (sysvinit path; the systemd path is skipped
# because /run/systemd/system does not exist here), and its dpkg trigger runs
# `invoke-rc.d dovecot restart` when imapd/lmtpd are installed. Without a
# policy-rc.d that denies, that would start a system-wide Dovecot on *:143,
# *:993, ... with /etc/dovecot config. We install a temporary deny-all
# policy-rc.d for the duration of apt-get, then disable/stop the system
# service anyway as a belt-and-braces measure.
POLICY=/usr/sbin/policy-rc.d
POLICY_BAK=
POLICY_OURS=0
policy_deny_begin() {
  if [[ -e $POLICY ]]; then
    POLICY_BAK=$(mktemp /usr/sbin/.policy-rc.d.dovecot-ref.XXXXXX)
    cp -p "$POLICY" "$POLICY_BAK"
  fi
  printf '#!/bin/sh\n# temporary, written by dovecot-ref.sh install\nexit 101\n' >"$POLICY.dovecot-ref.tmp"
  chmod 0755 "$POLICY.dovecot-ref.tmp"
  mv -f "$POLICY.dovecot-ref.tmp" "$POLICY"
  POLICY_OURS=1
}
policy_deny_end() {
  [[ $POLICY_OURS == 1 ]] || return 0
  if [[ -n $POLICY_BAK ]]; then
    mv -f "$POLICY_BAK" "$POLICY"
  else
    rm -f "$POLICY"
  fi
  POLICY_OURS=0
}

system_dovecot_quiesce() {
  # Remove boot-time start links (harmless if there is no sysvinit).
  if [[ -x /etc/init.d/dovecot ]] && command -v update-rc.d >/dev/null; then
    update-rc.d dovecot disable >/dev/null 2>&1 || true
  fi
  # systemd unit: the postinst enables dovecot.service via deb-systemd-helper
  # even without a running systemd (it creates the multi-user.target.wants
  # symlink). Undo that so a later systemd boot of this image won't start it.
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
  elif command -v deb-systemd-helper >/dev/null; then
    deb-systemd-helper disable dovecot.service dovecot.socket >/dev/null 2>&1 || true
  fi
  # A system instance started anyway (e.g. no policy-rc.d on some earlier
  # install) keeps its pid in /run/dovecot/master.pid.
  local pidf=/run/dovecot/master.pid pid
  if [[ -r $pidf ]]; then
    pid=$(cat "$pidf" 2>/dev/null || true)
    if [[ -n $pid ]] && pid_alive "$pid"; then
      log "stopping system-wide Dovecot (pid $pid) started by the package"
      doveadm stop >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do pid_alive "$pid" || break; sleep 0.1; done
    fi
  fi
}

cmd_install() {
  [[ $(id -u) == 0 ]] || die "install must run as root"
  export DEBIAN_FRONTEND=noninteractive
  if pkgs_installed; then
    log "already installed: $(dpkg-query -W -f='${Package}=${Version} ' "${PKGS[@]}")"
  else
    policy_deny_begin
    trap 'policy_deny_end' EXIT
    local apt_opts=(-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    # "Only if needed": try with the current lists first; the package lists
    # on these machines can be stale (the pool then 404s on the old version),
    # so on any failure refresh the lists once and retry.
    if ! apt-cache show dovecot-imapd dovecot-lmtpd >/dev/null 2>&1 ||
       ! apt-get install "${apt_opts[@]}" "${PKGS[@]}"; then
      log "install with current package lists failed; running apt-get update and retrying"
      apt-get update -q
      apt-get install "${apt_opts[@]}" "${PKGS[@]}"
    fi
    policy_deny_end
    trap - EXIT
  fi
  system_dovecot_quiesce
  ensure_run_user "$RUN_USER_DEFAULT"
  log "ok: $(dovecot --version)"
}

ensure_run_user() {
  local u=$1
  if ! getent passwd "$u" >/dev/null; then
    [[ $(id -u) == 0 ]] || die "user $u does not exist and we are not root"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin --comment "Roost benchmark reference Dovecot" "$u"
  fi
}

# ---------------------------------------------------------------- helpers
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

valid_port() { [[ $1 =~ ^[0-9]+$ ]] && (( $1 >= 1 && $1 <= 65535 )); }

# A process counts as alive if it exists and is not a zombie. Gotcha on this
# machine: PID 1 is not a real init and reaps orphans lazily, so the
# daemonized master lingers as a zombie for seconds after exiting, and
# `kill -0` alone would say it is still running.
pid_alive() {
  local st
  st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $st && $st != Z && $st != X ]]
}

master_pid() { # DIR -> pid of a live master, or fail
  local f="$1/run/master.pid" pid
  [[ -r $f ]] || return 1
  pid=$(cat "$f" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" || return 1
  echo "$pid"
}

session_pids() { # live (non-zombie) processes whose session id is $1
  ps -e -o pid=,sid=,stat= | awk -v s="$1" '$2 == s && $3 !~ /^Z/ { printf "%s ", $1 }'
}

log_tail() {
  local d=$1
  echo "---- last 40 lines of $d/dovecot.log ----" >&2
  tail -n 40 "$d/dovecot.log" >&2 2>/dev/null || echo "(no log file)" >&2
  if [[ -s $d/dovecot.stderr ]]; then
    echo "---- $d/dovecot.stderr ----" >&2
    tail -n 40 "$d/dovecot.stderr" >&2
  fi
}

# ---------------------------------------------------------------- start
cmd_start() {
  (( $# == 5 )) || usage
  local dir=$1 imap_port=$2 lmtp_port=$3 user=$4 pass=$5
  command -v dovecot >/dev/null || die "dovecot not installed; run: $PROG install"
  valid_port "$imap_port" || die "bad IMAP_PORT: $imap_port"
  valid_port "$lmtp_port" || die "bad LMTP_PORT: $lmtp_port"
  [[ $imap_port != "$lmtp_port" ]] || die "IMAP_PORT and LMTP_PORT must differ"
  # passwd-file is ':'-separated; auth_username_format lowercases (%Lu).
  [[ $user =~ ^[a-z0-9][a-z0-9._+@-]*$ ]] || die "USER must match [a-z0-9][a-z0-9._+@-]* (lowercase; it is looked up as %Lu)"
  [[ $pass != *:* && $pass != *$'\n'* && -n $pass ]] || die "PASSWORD must be non-empty and contain no ':' or newline"

  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  # Unix socket paths are limited to 108 bytes; the longest one Dovecot
  # creates under base_dir is about 30 chars ("/login/imap-hibernate" etc).
  (( ${#dir} <= 70 )) || die "DIR path too long (${#dir} > 70 chars): unix socket paths under DIR/run would exceed 108 bytes"
  if master_pid "$dir" >/dev/null; then
    die "an instance is already running in $dir (pid $(master_pid "$dir")); stop it first"
  fi
  port_open "$imap_port" && die "127.0.0.1:$imap_port already accepts connections (someone else is listening)"
  port_open "$lmtp_port" && die "127.0.0.1:$lmtp_port already accepts connections (someone else is listening)"

  # Who runs the processes.
  local run_user
  if [[ $(id -u) == 0 ]]; then
    run_user=$RUN_USER_DEFAULT
    ensure_run_user "$run_user"
  else
    run_user=$(id -un)
  fi
  local uid gid
  uid=$(id -u "$run_user"); gid=$(id -g "$run_user")
  [[ $uid != 0 ]] || die "refusing to run Dovecot mail processes as root"

  # Layout. Fresh run/ and state/ each start; mail/ persists across restarts.
  rm -rf "$dir/run" "$dir/state"
  mkdir -p "$dir/run" "$dir/state" "$dir/home"
  : >"$dir/dovecot.log"
  : >"$dir/dovecot.stderr"

  local pwfield
  case ${DOVECOT_REF_PW_SCHEME:-PLAIN} in
    PLAIN|plain) pwfield="{PLAIN}$pass" ;;
    *) pwfield=$(doveadm pw -s "$DOVECOT_REF_PW_SCHEME" -p "$pass") || die "doveadm pw failed" ;;
  esac
  # passwd-file: user:password:uid:gid:(gecos):home:(shell):extra_fields
  printf '%s:%s:%s:%s::%s::\n' "$user" "$pwfield" "$uid" "$gid" "$dir/home/$user" >"$dir/passwd"
  chmod 0600 "$dir/passwd"

  local plimit=${DOVECOT_REF_PROC_LIMIT:-1024} login_extra=""
  case ${DOVECOT_REF_LOGIN_MODE:-secure} in
    secure) ;;
    performance) login_extra=$'  service_count = 0\n  process_min_avail = 2\n  client_limit = '"$(( plimit * 2 ))" ;;
    *) die "DOVECOT_REF_LOGIN_MODE must be secure or performance" ;;
  esac
  local mail_fsync=${DOVECOT_REF_MAIL_FSYNC:-optimized}
  case $mail_fsync in
    optimized|always) ;;
    *) die "DOVECOT_REF_MAIL_FSYNC must be optimized or always" ;;
  esac
  cat >"$dir/dovecot.conf" <<EOF
# Generated by dovecot-ref.sh — self-contained reference Dovecot for Roost
# benchmarks. Nothing from /etc/dovecot is included.
# Dovecot $(dovecot --version 2>/dev/null || echo '?')

protocols = imap lmtp
listen = 127.0.0.1

# --- all runtime state under DIR ---------------------------------------
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
debug_log_path = $dir/dovecot.log
log_timestamp = "%Y-%m-%d %H:%M:%S "
instance_name = dovecot-ref-$imap_port

# --- rootless: every process runs as $run_user ($uid:$gid) -------------
# Dovecot normally drops login processes to dovenull and auth/anvil/etc to
# the 'dovecot' user; rootless, both must be the one user we run as.
default_internal_user = $run_user
default_internal_group = $run_user
default_login_user = $run_user
first_valid_uid = $uid
last_valid_uid = $uid
first_valid_gid = $gid
last_valid_gid = $gid
# chroot() needs root: clear every default chroot.
service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = $imap_port
  }
  inet_listener imaps {
    port = 0
  }
  process_limit = $plimit
$login_extra
}
service anvil {
  chroot =
  client_limit = $(( plimit * 3 ))
}
service auth {
  client_limit = $(( plimit * 3 ))
}
service ipc {
  chroot =
}
service auth-worker {
  user = \$default_internal_user
}

# --- IMAP: plaintext LOGIN over loopback, no TLS -----------------------
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login

service imap {
  process_limit = $plimit
}
# Benchmarks open tens of connections as one user from one address; the
# default of 10 would refuse them.
protocol imap {
  mail_max_userip_connections = $plimit
}

# --- LMTP inet listener ------------------------------------------------
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $lmtp_port
  }
  process_limit = $plimit
}
protocol lmtp {
  postmaster_address = postmaster@localhost
}

# --- one user, passwd-file (password scheme: ${DOVECOT_REF_PW_SCHEME:-PLAIN}) --
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%u $dir/passwd
}
# LMTP RCPT TO:<$user@localhost> must map to the passwd-file user.
$(if [[ $user != *@* ]]; then printf 'protocol lmtp {\n  auth_username_format = %%Ln\n}\n'; fi)

# --- mail storage ------------------------------------------------------
mail_location = maildir:$dir/mail/%u
mail_uid = $uid
mail_gid = $gid

# Durability: Dovecot's default unless DOVECOT_REF_MAIL_FSYNC says otherwise.
# Default is mail_fsync = optimized: Dovecot fsync()s whenever it matters for
# not losing data — a saved/appended/delivered mail file is fsynced before
# it is renamed into new/ or cur/ and before APPEND/LMTP DATA is answered OK
# (index/cache files are not fsynced). 'always' adds fsync after every
# write (for NFS); 'never' turns it off. DOVECOT_REF_MAIL_FSYNC=always sets it.
mail_fsync = $mail_fsync
EOF

  if [[ $(id -u) == 0 ]]; then
    # Everything the instance writes must belong to the run user. DIR itself
    # must be traversable (mktemp -d makes it 0700).
    chown "$run_user:$run_user" "$dir/run" "$dir/state" "$dir/home" "$dir/dovecot.log" "$dir/passwd"
    [[ -d $dir/mail ]] && chown -R "$run_user:$run_user" "$dir/mail"
    chmod a+x "$dir"
    chmod 0644 "$dir/dovecot.conf"
    if ! setpriv --reuid="$uid" --regid="$gid" --init-groups test -x "$dir/run" -a -r "$dir/dovecot.conf"; then
      die "user $run_user cannot reach $dir (a parent directory is not world-traversable); use a DIR under a 0755 path"
    fi
  fi
  mkdir -p "$dir/mail"
  if [[ $(id -u) == 0 ]]; then chown "$run_user:$run_user" "$dir/mail"; fi

  # Validate config before starting (gives a clean error for typos).
  if ! doveconf -c "$dir/dovecot.conf" -n >"$dir/doveconf-n.txt" 2>"$dir/dovecot.stderr"; then
    log_tail "$dir"
    die "doveconf rejected $dir/dovecot.conf"
  fi

  local launcher=()
  if [[ $(id -u) == 0 ]]; then
    launcher=(setpriv --reuid="$uid" --regid="$gid" --init-groups --)
  fi
  # dovecot daemonizes (forks, parent exits) once listeners are created.
  if ! "${launcher[@]}" dovecot -c "$dir/dovecot.conf" </dev/null >>"$dir/dovecot.stderr" 2>&1; then
    log_tail "$dir"
    die "dovecot failed to start"
  fi

  local timeout=${DOVECOT_REF_START_TIMEOUT:-20} deadline pid=""
  deadline=$(( $(date +%s) + timeout ))
  while :; do
    pid=$(master_pid "$dir" || true)
    if [[ -n $pid ]] && port_open "$imap_port" && port_open "$lmtp_port"; then
      break
    fi
    if (( $(date +%s) >= deadline )); then
      log_tail "$dir"
      [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
      die "timed out after ${timeout}s waiting for IMAP 127.0.0.1:$imap_port and LMTP 127.0.0.1:$lmtp_port (master pid: ${pid:-none})"
    fi
    sleep 0.1
  done
  echo "$pid"
}

# ---------------------------------------------------------------- stop
cmd_stop() {
  (( $# == 1 )) || usage
  local dir=$1 pid
  [[ -d $dir ]] || die "no such directory: $dir"
  dir=$(cd "$dir" && pwd -P)
  if ! pid=$(master_pid "$dir"); then
    log "not running in $dir"
    return 0
  fi
  # `doveadm -c DIR/dovecot.conf stop` just sends SIGTERM to the pid in
  # base_dir/master.pid and then polls with kill(pid, 0) — which, with the
  # lazy zombie reaping here, makes it hang ~2 s after the master is gone.
  # So send the SIGTERM ourselves; the master then stops all children.
  kill -TERM "$pid" 2>/dev/null || true
  local timeout=${DOVECOT_REF_STOP_TIMEOUT:-20} i
  for (( i = 0; i < timeout * 10; i++ )); do
    pid_alive "$pid" || break
    sleep 0.05
  done
  if pid_alive "$pid"; then
    log "master $pid still alive after ${timeout}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  # The master exits before some children (log, stats) have finished
  # draining. The master setsid()s when it daemonizes, so every process of
  # this instance has session id == master pid: wait for them too.
  local left
  for (( i = 0; i < 50; i++ )); do
    left=$(session_pids "$pid")
    [[ -z $left ]] && break
    sleep 0.05
  done
  if [[ -n $left ]]; then
    log "killing leftover children of $pid: $left"
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
  fi
  log "stopped (pid $pid)"
}

cmd_status() {
  (( $# == 1 )) || usage
  local pid
  if pid=$(master_pid "$(cd "$1" 2>/dev/null && pwd -P)"); then echo "$pid"; else exit 1; fi
}

case ${1:-} in
  install) shift; cmd_install "$@" ;;
  start)   shift; cmd_start "$@" ;;
  stop)    shift; cmd_stop "$@" ;;
  status)  shift; cmd_status "$@" ;;
  *) usage ;;
esac
