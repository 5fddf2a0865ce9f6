#!/usr/bin/env python3
"""LMTP delivery benchmark: the same set of mixed-size messages, delivered by
N concurrent senders (one LMTP connection each, one transaction per message),
to any LMTP server. Prints deliveries/s. Python stdlib only.

    bench/lmtp_bench.py --port 2424 --rcpt bench@localhost [--messages 1000] [--senders 4]

The message set depends only on --seed, so two servers get identical input.
Every message has its own Message-ID, so duplicate suppression never applies.
"""
import argparse
import queue
import random
import smtplib
import sys
import threading
import time

# Sizes, in bytes, and how often each range is drawn: mostly small messages,
# some with attachments, a few large ones, roughly what a personal inbox gets.
SIZE_MIX = [
    (0.60, 1_000, 8_000),
    (0.30, 8_000, 64_000),
    (0.09, 64_000, 512_000),
    (0.01, 1_000_000, 4_000_000),
]


def make_messages(n, seed):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        r = rng.random()
        acc = 0.0
        for p, lo, hi in SIZE_MIX:
            acc += p
            if r <= acc:
                size = rng.randint(lo, hi)
                break
        else:
            size = SIZE_MIX[-1][2]
        header = (
            f"From: sender{i % 17}@example.org\r\n"
            f"To: bench@example.org\r\n"
            f"Subject: benchmark message {i}\r\n"
            f"Message-ID: <bench-{seed}-{i}@example.org>\r\n"
            f"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        )
        line = ("%d lorem ipsum dolor sit amet consectetur adipiscing elit " % i)[:76] + "\r\n"
        body = line * max(1, (size - len(header)) // len(line))
        out.append((header + body).encode())
    return out


def sender(host, port, rcpt, work, results, errors):
    try:
        conn = smtplib.LMTP(host, port)
        conn.ehlo_or_helo_if_needed()
        while True:
            try:
                msg = work.get_nowait()
            except queue.Empty:
                break
            refused = conn.sendmail("bench-sender@example.org", [rcpt], msg)
            if refused:
                errors.append(refused)
            else:
                results.append(len(msg))
        conn.quit()
    except Exception as e:  # report, do not hang the other senders
        errors.append(repr(e))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rcpt", required=True)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    msgs = make_messages(a.messages, a.seed)
    work = queue.Queue()
    for m in msgs:
        work.put(m)
    results, errors = [], []
    threads = [
        threading.Thread(target=sender, args=(a.host, a.port, a.rcpt, work, results, errors))
        for _ in range(a.senders)
    ]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.monotonic() - t0
    total = sum(results)
    print(
        f"{a.label or a.port}: {len(results)} delivered, {len(errors)} failed, "
        f"{total / 1e6:.1f} MB in {dt:.2f} s: {len(results) / dt:.0f} deliveries/s, "
        f"{total / 1e6 / dt:.1f} MB/s ({a.senders} senders)"
    )
    if errors:
        print("errors:", errors[:5], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
