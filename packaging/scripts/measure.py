#!/usr/bin/env python3
"""Measures a roost binary for docs/benchmarks.md: file size, start time until
systemd readiness (READY=1 on a NOTIFY_SOCKET we own, exactly what
`systemctl start` waits for), idle memory after start, and stop time.

    packaging/scripts/measure.py BINARY [--runner "qemu-aarch64-static -L /usr/aarch64-linux-gnu"]

Uses a fresh data dir with one user; ports are random loopback ports. The
page cache is warm (the binary was just read): "start" here is a new process,
not a cold boot.
"""
import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

RUNS = 5


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    """VmRSS and VmHWM of pid (and of its children, under a qemu runner the
    measured process is qemu itself)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--runner", default="")
    args = ap.parse_args()
    runner = shlex.split(args.runner)
    size = os.path.getsize(args.binary)
    print(f"binary size: {size} bytes ({size / 1024 / 1024:.1f} MiB)")

    tmp = tempfile.mkdtemp()
    data = os.path.join(tmp, "data")
    config = os.path.join(tmp, "roost.toml")
    with open(config, "w") as f:
        f.write(
            f'[imap]\nlisten = ["127.0.0.1:{free_port(socket.SOCK_STREAM)}"]\n'
            f'listen_tls = ["127.0.0.1:{free_port(socket.SOCK_STREAM)}"]\n'
            f'[lmtp]\nlisten = ["127.0.0.1:{free_port(socket.SOCK_STREAM)}"]\n'
            f'[sync]\nlisten = ["127.0.0.1:{free_port(socket.SOCK_DGRAM)}"]\n'
        )
    base = runner + [args.binary, "--data-dir", data, "--config", config]
    subprocess.run(base + ["init"], check=True, capture_output=True)
    subprocess.run(base + ["user", "add", "alice", "--password-stdin"], input=b"a fine passphrase\n",
                   check=True, capture_output=True)

    t0 = time.monotonic()
    subprocess.run(base + ["--version"], check=True, capture_output=True)
    print(f"`roost --version`: {(time.monotonic() - t0) * 1000:.0f} ms")

    starts, stops, rss, hwm = [], [], [], []
    for _ in range(RUNS):
        notify_path = os.path.join(tmp, "notify")
        if os.path.exists(notify_path):
            os.unlink(notify_path)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(60)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        t0 = time.monotonic()
        proc = subprocess.Popen(base + ["serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            msg = notify.recv(4096)
            if b"READY=1" in msg:
                break
        starts.append(time.monotonic() - t0)
        time.sleep(5)  # idle: no clients, no peers
        mem = rss_kib(proc.pid)
        rss.append(mem["VmRSS"])
        hwm.append(mem["VmHWM"])
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        stops.append(time.monotonic() - t0)
        notify.close()

    med = lambda xs: sorted(xs)[len(xs) // 2]
    print(f"start until READY=1 (median of {RUNS}): {med(starts) * 1000:.0f} ms "
          f"(min {min(starts) * 1000:.0f}, max {max(starts) * 1000:.0f})")
    print(f"idle RSS 5 s after READY (median): {med(rss) / 1024:.1f} MiB; peak RSS {max(hwm) / 1024:.1f} MiB")
    print(f"stop after SIGTERM (median): {med(stops) * 1000:.0f} ms")


if __name__ == "__main__":
    sys.exit(main())
