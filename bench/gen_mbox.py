#!/usr/bin/env python3
"""Writes a deterministic mbox of N messages (mixed sizes, 500 B to 16 KB,
some bodies with `From ` lines that need quoting) for import benchmarks.

    bench/gen_mbox.py OUT.mbox [N] [SEED]
"""
import random
import sys


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 7)
    with open(out, "w", newline="\n") as f:
        for i in range(n):
            day = 1 + i % 28
            f.write(f"From sender{i % 31}@example.org Tue Nov {day:2d} 10:{i % 60:02d}:{i % 59:02d} 2023\n")
            f.write(f"From: sender{i % 31}@example.org\nTo: bench@example.org\n")
            f.write(f"Subject: generated message {i}\nMessage-ID: <gen-{i}@example.org>\n")
            if i % 3 == 0:
                f.write("Status: RO\n")
            if i % 7 == 0:
                f.write("X-Status: F\n")
            f.write("\n")
            size = rng.randint(500, 16000)
            line = ("%d the quick brown fox jumps over the lazy dog " % i) * 2
            line = line[:72] + "\n"
            for j in range(max(1, size // len(line))):
                if j == 3 and i % 10 == 0:
                    f.write("From the body, quoted in the file\n".replace("From", ">From", 1))
                else:
                    f.write(line)
            f.write("\n")


if __name__ == "__main__":
    main()
