#!/usr/bin/env python3
"""Mixed FETCH/FETCH/STORE throughput with the SELECT outside the timed
window (the cargo bench counts each client's SELECT of the big mailbox):
  imap_mixed.py PORT 10 0 N fill        create "big" and append N messages (10 clients)
  imap_mixed.py PORT CLIENTS ROUNDS N run
"""
import imaplib, sys, time, multiprocessing as mp
port = int(sys.argv[1]); clients = int(sys.argv[2]); rounds = int(sys.argv[3]); big = int(sys.argv[4])
def fill(c):
    M = imaplib.IMAP4('127.0.0.1', port); M.login('bench', 'bench-password-1')
    for i in range(c, big, 10):
        body = ("Subject: m %d\r\nFrom: a@example.org\r\n\r\n" % i) + ("line of body text %d\r\n" % i) * 100
        M.append('big', None, None, body.encode())
def work(args):
    c, barrier = args
    M = imaplib.IMAP4('127.0.0.1', port); M.login('bench', 'bench-password-1')
    M.select('big')
    barrier.wait()
    t = time.perf_counter()
    for r in range(rounds):
        seq = str(1 + (c * 7919 + r * 104729) % big)
        M.fetch(seq, '(FLAGS BODY.PEEK[HEADER])'); M.fetch(seq, 'BODY.PEEK[]'); M.store(seq, '+FLAGS', '(\\Seen)')
    return time.perf_counter() - t
if __name__ == '__main__':
    if sys.argv[5] == 'fill':
        M = imaplib.IMAP4('127.0.0.1', port); M.login('bench', 'bench-password-1'); M.create('big')
        ps = [mp.Process(target=fill, args=(c,)) for c in range(10)]
        [p.start() for p in ps]; [p.join() for p in ps]; print("filled"); sys.exit(0)
    m = mp.Manager(); b = m.Barrier(clients)
    with mp.Pool(clients) as pool:
        t0 = time.perf_counter()
        times = pool.map(work, [(c, b) for c in range(clients)])
    print("clients", clients, "cmds", clients*rounds*3, "throughput %.0f cmd/s (slowest client %.2f s)" % (clients*rounds*3/max(times), max(times)))
