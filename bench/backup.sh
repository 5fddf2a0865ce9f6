#!/usr/bin/env bash
# Usage: bench/backup.sh  (ROOST=path/to/roost picks a binary; needs the age CLI)
# Backup cost vs the reference `tar -c DATA | age -r R` of the same data dir, same script.
set -euo pipefail
R=${ROOST:-target/debug/roost}
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
r() { "$R" --data-dir "$w/data" --config "$w/roost.toml" "$@"; }
: >"$w/roost.toml"
r init >/dev/null
echo "a fine passphrase" | r user add alice --password-stdin >/dev/null
python3 - "$w/in.mbox" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(2000):
        body = ("line %d of a message body that is long enough to look like mail\n" % i) * 40
        f.write(f"From a@example.org Mon Jan  1 00:00:00 2026\nFrom: a@example.org\nTo: alice@example.org\nSubject: m {i}\nMessage-ID: <b{i}@example.org>\n\n{body}\n")
PY
r import --user alice "$w/in.mbox" >/dev/null
r backup keygen --out "$w/id.txt" >"$w/keygen.out"
rcpt=$(sed -n 's/^recipient = "\(.*\)"/\1/p' "$w/keygen.out")
data_bytes=$(du -sb "$w/data" | cut -f1)
t0=$(date +%s.%N); r backup --recipient "$rcpt" --to "$w/b.age" >/dev/null; t1=$(date +%s.%N)
tar -C "$w" -cf - data | age -r "$rcpt" >"$w/ref.age"; t2=$(date +%s.%N)
r verify >"$w/v1"
mkdir "$w/refdir"
t3=$(date +%s.%N); "$R" --data-dir "$w/restored" --config "$w/roost.toml" restore "$w/b.age" --identity "$w/id.txt" >/dev/null; t4=$(date +%s.%N)
age -d -i "$w/id.txt" "$w/ref.age" | tar -C "$w/refdir" -xf -; t5=$(date +%s.%N)
"$R" --data-dir "$w/restored" --config "$w/roost.toml" verify >"$w/v2"
cmp "$w/v1" "$w/v2" && echo "verify digest: same after restore"
python3 - "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" "$(stat -c %s "$w/b.age")" "$(stat -c %s "$w/ref.age")" "$data_bytes" <<'PY'
import sys
t0,t1,t2,t3,t4,t5=map(float,sys.argv[1:7]); b,ref,data=map(int,sys.argv[7:10])
print(f"data dir {data/1e6:.1f} MB, 2000 messages")
print(f"roost backup {t1-t0:.2f} s, {b/1e6:.1f} MB | tar|age {t2-t1:.2f} s, {ref/1e6:.1f} MB | time ratio {(t1-t0)/(t2-t1):.2f}, size ratio {b/ref:.2f}")
print(f"roost restore {t4-t3:.2f} s | age -d|tar -x {t5-t4:.2f} s | ratio {(t4-t3)/(t5-t4):.2f}")
PY
