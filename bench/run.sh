#!/usr/bin/env bash
# Benchmarks behind docs/benchmarks.md.
#
#   bench/run.sh lmtp     LMTP deliveries/s: Roost vs a private Dovecot (lmtpd),
#                         1,000 mixed-size messages, 4 concurrent senders
#   bench/run.sh import   `roost import` of a generated 20,000-message mbox
#   bench/run.sh all      both
#
# Uses target/release/roost (override with ROOST=...), works in
# BENCH_DIR (default /tmp/roost-bench, wiped first). Dovecot comes from
# bench/dovecot-ref.sh (run `bench/dovecot-ref.sh install` once, as root).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOST=${ROOST:-$HERE/../target/release/roost}
WORK=${BENCH_DIR:-/tmp/roost-bench}
MESSAGES=${MESSAGES:-1000}
SENDERS=${SENDERS:-4}
IMPORT_MESSAGES=${IMPORT_MESSAGES:-20000}
ROOST_LMTP_PORT=14424
DOVECOT_IMAP_PORT=14301
DOVECOT_LMTP_PORT=14302

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "port $1 did not open" >&2
  return 1
}

roost_data() {
  local dir=$1
  : > "$WORK/roost.toml"
  "$ROOST" --config "$WORK/roost.toml" --data-dir "$dir" init >/dev/null
  echo 'bench-password' | "$ROOST" --config "$WORK/roost.toml" --data-dir "$dir" user add bench --password-stdin >/dev/null
}

bench_lmtp() {
  echo "== LMTP: $MESSAGES messages, $SENDERS senders"
  roost_data "$WORK/roost-lmtp"
  "$ROOST" --config "$WORK/roost.toml" --data-dir "$WORK/roost-lmtp" serve \
    --listen-lmtp "127.0.0.1:$ROOST_LMTP_PORT" --listen-sync 127.0.0.1:0 >"$WORK/roost-serve.log" 2>&1 &
  local roost_pid=$!
  trap 'kill $roost_pid 2>/dev/null || true' RETURN
  wait_port "$ROOST_LMTP_PORT"
  "$HERE/lmtp_bench.py" --port "$ROOST_LMTP_PORT" --rcpt bench@example.org \
    --messages "$MESSAGES" --senders "$SENDERS" --label roost
  kill "$roost_pid"; wait "$roost_pid" 2>/dev/null || true

  "$HERE/dovecot-ref.sh" start "$WORK/dovecot" "$DOVECOT_IMAP_PORT" "$DOVECOT_LMTP_PORT" bench secret >/dev/null
  "$HERE/lmtp_bench.py" --port "$DOVECOT_LMTP_PORT" --rcpt bench@localhost \
    --messages "$MESSAGES" --senders "$SENDERS" --label dovecot
  "$HERE/dovecot-ref.sh" stop "$WORK/dovecot" >/dev/null
}

bench_import() {
  echo "== import: $IMPORT_MESSAGES-message mbox"
  "$HERE/gen_mbox.py" "$WORK/big.mbox" "$IMPORT_MESSAGES"
  echo "mbox: $(du -h "$WORK/big.mbox" | cut -f1)"
  roost_data "$WORK/roost-import"
  "$ROOST" --config "$WORK/roost.toml" --data-dir "$WORK/roost-import" import --user bench "$WORK/big.mbox" 2>/dev/null
  echo "re-run (everything already present):"
  "$ROOST" --config "$WORK/roost.toml" --data-dir "$WORK/roost-import" import --user bench "$WORK/big.mbox" 2>/dev/null
}

rm -rf "$WORK"
mkdir -p "$WORK"
chmod 755 "$WORK"
case ${1:-all} in
  lmtp) bench_lmtp ;;
  import) bench_import ;;
  all) bench_lmtp; bench_import ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
