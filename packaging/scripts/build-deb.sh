#!/usr/bin/env bash
# Builds the roost .deb: the release binary, then the files generated from it
# (man page, shell completions, the /etc config), then `cargo deb --no-build`.
#
#   packaging/scripts/build-deb.sh [--target TRIPLE] [--profile P] [--features F] [--deb-revision N] [--out DIR]
#
# --target aarch64-unknown-linux-gnu cross-builds for a Raspberry Pi (needs
# `rustup target add aarch64-unknown-linux-gnu`, Debian's gcc-aarch64-linux-gnu
# and qemu-user-static: the generated files come from running the arm64 binary
# under qemu). --features upgrade-test-migration is for the upgrade test only.
# --profile dev packages the debug build that `cargo test` already made: CI's
# install test uses it to test the packaging in about a minute instead of a
# cold LTO build (see packaging/scripts/deb-install-test.sh). Releases use the
# default, release. Honours CARGO_TARGET_DIR. Prints the path of the .deb as its last line.
set -euo pipefail
cd "$(dirname "$0")/../.."

target=""
profile="release"
features=""
revision=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target="$2"; shift 2 ;;
    --profile) profile="$2"; shift 2 ;;
    --features) features="$2"; shift 2 ;;
    --deb-revision) revision="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "build-deb.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

command -v cargo-deb >/dev/null || {
  echo "build-deb.sh: cargo-deb is missing: cargo install cargo-deb --version 3.8.0 --locked" >&2
  exit 1
}

target_dir="${CARGO_TARGET_DIR:-target}"
# Cargo names the dev profile's directory "debug".
profile_dir="$profile"
[ "$profile" = dev ] && profile_dir=debug
build_args=(--profile "$profile" -p roost --locked)
deb_args=(-p roost --no-build --profile "$profile")
runner=()
bin="$target_dir/$profile_dir/roost"
if [ -n "$target" ]; then
  build_args+=(--target "$target")
  deb_args+=(--target "$target")
  bin="$target_dir/$target/$profile_dir/roost"
  case "$target" in
    aarch64-unknown-linux-gnu)
      # Debian's cross linker; cargo's default `cc` would link an x86 binary.
      export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
      # rusqlite's bundled SQLite is C: build it with the cross compiler too.
      export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
      export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
      runner=(qemu-aarch64-static -L /usr/aarch64-linux-gnu)
      ;;
  esac
fi
if [ -n "$features" ]; then
  build_args+=(--features "$features")
fi
if [ -n "$revision" ]; then
  deb_args+=(--deb-revision "$revision")
fi
if [ -n "$out" ]; then
  mkdir -p "$out"
  deb_args+=(--output "$out")
fi

cargo build "${build_args[@]}"

# Files the .deb ships that are generated (Cargo.toml's deb assets point here).
gen=packaging/generated
rm -rf "$gen"
mkdir -p "$gen"
"${runner[@]}" "$bin" man >"$gen/roost.1"
"${runner[@]}" "$bin" completions bash >"$gen/roost.bash"
"${runner[@]}" "$bin" completions zsh >"$gen/_roost"
"${runner[@]}" "$bin" completions fish >"$gen/roost.fish"
# The packaged service keeps its data in /var/lib/roost (StateDirectory=roost),
# so the installed config says so explicitly: admin commands that read it act
# on the same data dir as the service.
sed 's|^# data_dir = "/var/lib/roost"$|data_dir = "/var/lib/roost"|' packaging/roost.toml >"$gen/roost.toml"
grep -q '^data_dir = "/var/lib/roost"$' "$gen/roost.toml" || {
  echo "build-deb.sh: packaging/roost.toml no longer has the data_dir line this script uncomments" >&2
  exit 1
}

cargo deb "${deb_args[@]}" | tail -n 1
