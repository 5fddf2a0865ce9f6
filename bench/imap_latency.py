#!/usr/bin/env python3
"""Latency of one IMAP command at a time, for profiling one STORE or FETCH
(docs/benchmarks.md, "STORE and FETCH, one command"). Against a running
`roost serve` with user bench / bench-password-1 on 127.0.0.1:PORT:
  imap_latency.py PORT fill N            append N messages to INBOX
  imap_latency.py PORT store N [KEYWORD]  N STOREs +FLAGS ($KEYWORD<k>) on messages 1-200
  imap_latency.py PORT fetchh|fetchb|noop N
Prints p50/p90/p99 (python imaplib on the client side)."""
import imaplib, sys, time, statistics
port = int(sys.argv[1]); mode = sys.argv[2]; n = int(sys.argv[3])
M = imaplib.IMAP4('127.0.0.1', port)
M.login('bench', 'bench-password-1')
if mode == 'fill':
    for i in range(n):
        body = ("Subject: m %d\r\nFrom: a@example.org\r\n\r\n" % i) + ("line of body text %d\r\n" % i) * 100
        M.append('INBOX', None, None, body.encode())
    print("filled", n); sys.exit(0)
M.select('INBOX')
lat = []
for i in range(n):
    t = time.perf_counter()
    if mode == 'store':
        M.store(str(i % 200 + 1), '+FLAGS', '($%s%d)' % (sys.argv[4] if len(sys.argv) > 4 else 'K', i // 200))
    elif mode == 'fetchh':
        M.fetch(str(i % 200 + 1), '(BODY.PEEK[HEADER])')
    elif mode == 'fetchb':
        M.fetch(str(i % 200 + 1), '(BODY.PEEK[])')
    elif mode == 'noop':
        M.noop()
    lat.append(time.perf_counter() - t)
lat.sort()
print(mode, "n", n, "p50 %.3f ms p90 %.3f ms p99 %.3f ms" % (lat[len(lat)//2]*1e3, lat[len(lat)*9//10]*1e3, lat[len(lat)*99//100]*1e3))
M.logout()
