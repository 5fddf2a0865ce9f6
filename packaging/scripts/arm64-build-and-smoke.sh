#!/usr/bin/env bash
# Cross-builds the arm64 (Raspberry Pi 3/4/5, 64-bit OS) release binary and
# .deb, then smoke-tests that binary under qemu-user: the commands a new device
# runs (init, user add, status, verify, doctor) and a daemon start and stop.
# Run before every release (too slow for CI: a cold LTO cross build); the
# README lists it.
#
#   packaging/scripts/arm64-build-and-smoke.sh
#
# Needs, on Debian 12 (installed here when run as root and missing):
#   rustup target add aarch64-unknown-linux-gnu
#   apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
# Honours CARGO_TARGET_DIR. The .deb lands in $CARGO_TARGET_DIR/arm64-deb/.
set -euo pipefail
cd "$(dirname "$0")/../.."

triple=aarch64-unknown-linux-gnu
target_dir="${CARGO_TARGET_DIR:-target}"
packages=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "arm64: missing ${missing[*]}; install them as root" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"

t=$SECONDS
deb=$(packaging/scripts/build-deb.sh --target "$triple" --out "$target_dir/arm64-deb" | tail -n 1)
build_s=$((SECONDS - t))
bin="$target_dir/$triple/release/roost"
file "$bin" | grep -q "ARM aarch64" || { echo "arm64: $bin is not an arm64 binary: $(file "$bin")" >&2; exit 1; }
dpkg-deb -f "$deb" Architecture | grep -qx arm64 || { echo "arm64: $deb is not Architecture: arm64" >&2; exit 1; }

t=$SECONDS
# -L: where qemu finds the arm64 dynamic loader and libc (libc6-dev-arm64-cross).
qemu=(qemu-aarch64-static -L /usr/aarch64-linux-gnu)
smoke=$(mktemp -d)
trap 'rm -rf "$smoke"' EXIT
run() { "${qemu[@]}" "$bin" --data-dir "$smoke/data" --config "$smoke/roost.toml" "$@"; }
# Free ports: a build machine may already run something on Roost's defaults.
free() { python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_$1); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
printf '[imap]\nlisten = ["127.0.0.1:%s"]\nlisten_tls = ["127.0.0.1:%s"]\n[lmtp]\nlisten = ["127.0.0.1:%s"]\n[sync]\nlisten = ["127.0.0.1:%s"]\n' \
  "$(free STREAM)" "$(free STREAM)" "$(free STREAM)" "$(free DGRAM)" >"$smoke/roost.toml"

"${qemu[@]}" "$bin" --version
run init
echo "a fine passphrase" | run user add alice --password-stdin
run status
run verify
# Wait for READY=1 on a notify socket of our own, as systemd would: the
# SIGTERM handler is installed only then, and qemu makes start-up slow.
python3 - "$smoke/notify" >"$smoke/notify.log" 2>&1 <<'EOF_PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
while b"READY=1" not in s.recv(4096):
    pass
EOF_PY
listener=$!
for _ in $(seq 1 50); do [ -S "$smoke/notify" ] && break; sleep 0.1; done
# Not through `run`: a backgrounded shell function is a subshell, and $! would
# be that subshell, leaving qemu running after our SIGTERM.
NOTIFY_SOCKET="$smoke/notify" "${qemu[@]}" "$bin" --data-dir "$smoke/data" --config "$smoke/roost.toml" serve \
  >"$smoke/serve.log" 2>&1 &
pid=$!
wait "$listener" || { cat "$smoke/serve.log"; echo "arm64: serve sent no READY=1 within 60 s" >&2; exit 1; }
run doctor || { cat "$smoke/serve.log"; echo "arm64: doctor found problems" >&2; exit 1; }
kill -TERM "$pid"
wait "$pid" || { rc=$?; cat "$smoke/serve.log"; echo "arm64: serve exited $rc on SIGTERM" >&2; exit 1; }
smoke_s=$((SECONDS - t))

echo "arm64: ok: $deb"
echo "arm64: binary $(stat -c %s "$bin") bytes; build+package ${build_s} s; qemu smoke test ${smoke_s} s"
