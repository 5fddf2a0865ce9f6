#!/usr/bin/env bash
# Runs Roost's whole test suite on a fresh Debian machine that has Rust:
# installs the system packages the tests drive (as root, when missing), then
# checks formatting and lints and runs every test.
set -euo pipefail
cd "$(dirname "$0")"

# Real peers the tests talk to: Postfix (LMTP end-to-end), isync/mbsync (IMAP
# client), python3 (imaplib/smtplib sessions), chromium + python3-venv (the
# web UI test drives Debian's Chromium with Playwright for Python).
packages=(postfix isync python3 ca-certificates iproute2 chromium python3-venv)
# The backup tests decrypt a backup with the standard age CLI.
packages+=(age)
# The desktop app (Tauri 2) builds against webkit2gtk's headers; its
# end-to-end test drives its window under Xvfb through WebKitWebDriver.
packages+=(libwebkit2gtk-4.1-dev webkit2gtk-driver xvfb)
# Packaging test (below): dpkg-shlibdeps for cargo-deb, systemd-analyze, man,
# adduser for the package's postinst.
packages+=(dpkg-dev systemd man-db adduser)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "test.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Postfix asks how to configure itself; the tests bring their own config.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "test.sh: not root, cannot install ${missing[*]}; tests that need them will fail" >&2
  fi
fi

cargo fmt --all -- --check
# The desktop app (roost-desktop) needs webkit2gtk; it is linted and tested below.
cargo clippy --workspace --exclude roost-desktop --all-targets -- -D warnings
# The tests that need Postfix must not skip here.
export ROOST_REQUIRE_POSTFIX=1
# The WAN test runs devices in network namespaces (CI is root).
export ROOST_REQUIRE_NETNS=1
# The doctor tests that mount a tmpfs must not skip when we can run them.
if [ "$(id -u)" = 0 ]; then export ROOST_REQUIRE_ROOT=1; fi
cargo test --workspace --exclude roost-desktop

# The web UI in headless Chromium, against two real daemons. Playwright for
# Python (and Selenium, for the desktop test below) go into a venv under
# target/ (Playwright's own browser download is not used).
target_dir="${CARGO_TARGET_DIR:-target}"
venv="$target_dir/browser-venv"
if ! "$venv/bin/python" -c "import playwright, selenium" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "playwright==1.65.2" "selenium==4.51.0"
fi
"$venv/bin/python" tests/browser/test_ui.py "$target_dir/debug/roost" "$target_dir/screenshots"

# The desktop app (roost-desktop, not a default member): lints and its tests
# (library tests and IPC tests on tauri's MockRuntime; no display needed).
cargo clippy -p roost-desktop --all-targets -- -D warnings
cargo test -p roost-desktop
# The real app end to end: its debug binary (built by the tests above) under
# Xvfb, driven through tauri-driver + WebKitWebDriver with Selenium, against
# two real daemons; saves target/screenshots/desktop-*.png (the README shows
# desktop-dashboard.png, copied to docs/img/). About 20 s, plus about two
# minutes to install tauri-driver on a fresh machine.
tauri_driver_version=2.1.0
installed_crates="$(cargo install --list)"
if ! grep -q "^tauri-driver v$tauri_driver_version:" <<<"$installed_crates"; then
  cargo install tauri-driver --version "$tauri_driver_version" --locked
fi
"$venv/bin/python" tests/browser/test_desktop.py "$target_dir/debug/roost" "$target_dir/debug/roost-desktop" \
  "$target_dir/screenshots"

# --- Packaging (issue 10) ---------------------------------------------------
# Builds the .deb from the debug build above and installs, upgrades (one more
# migration), removes and purges it: packaging/scripts/deb-install-test.sh.
# About a minute, plus about two to install cargo-deb on a fresh machine. The
# release (LTO) and arm64 packages are built by
# packaging/scripts/arm64-build-and-smoke.sh before a release, not here.
if [ "$(id -u)" = 0 ]; then
  cargo_deb_version=3.8.0
  if ! cargo deb --version 2>/dev/null | grep -q "$cargo_deb_version"; then
    cargo install cargo-deb --version "$cargo_deb_version" --locked
  fi
  packaging/scripts/deb-install-test.sh
else
  echo "test.sh: not root, skipping the .deb install test (packaging/scripts/deb-install-test.sh)" >&2
fi
