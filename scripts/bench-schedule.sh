#!/usr/bin/env bash
# 10,000 scheduled workflows (by default) under one daemon: peak memory, and how late fires are
# recorded (p50/p99) and runs finished. Every workflow fires once a minute at its own second, so
# about N/60 fires a second. Figures are printed, never asserted.
#   scripts/bench-schedule.sh [N] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
secs=${2:-150}

cargo build --release --quiet
bin=$PWD/target/release/satflow
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$dir/workflows"
cat > "$dir/satflow.yaml" <<YAML
database: sqlite://bench.db
listen: 127.0.0.1:$port
email: { dir: mail, from: satflow@example.com, to: me@example.com }
YAML
python3 - "$dir/workflows" "$n" <<'PY'
import sys
folder, n = sys.argv[1], int(sys.argv[2])
zones = ["Europe/Zurich", "America/New_York", "Asia/Tokyo", "UTC"]
for i in range(n):
    with open(f"{folder}/w{i}.yaml", "w") as f:
        f.write(f"""name: w{i}
on:
  schedule: {{ cron: "{i % 60} * * * * *", timezone: {zones[i % 4]}, catch_up: skip }}
steps:
  - id: note
    uses: email
    if: "{{{{ run.id % 1000 == 0 }}}}"
    with: {{ subject: "w{i} fired", body: "run {{{{ run.id }}}}" }}
""")
PY
echo "generated $n workflows"
start=$(date +%s.%N)
"$bin" run -q -c "$dir/satflow.yaml" &
pid=$!
peak=0
for _ in $(seq 1 "$secs"); do
  sleep 1
  rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  [ "$rss" -gt "$peak" ] && peak=$rss
done
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
kill -TERM $pid; wait $pid || true
echo "ran $secs s; peak RSS sampled ${peak} KiB, VmHWM ${hwm} KiB"
python3 - "$dir/bench.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] if xs else float("nan")
late = [r[0] for r in db.execute("SELECT recorded_at - scheduled_for FROM fires")]
done = [r[0] for r in db.execute(
    "SELECT r.finished_at - f.scheduled_for FROM runs r JOIN fires f ON f.run_id = r.id WHERE r.status = 'succeeded'")]
states = dict(db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
print(f"fires recorded: {len(late)}; fire lateness p50 {pct(late,50)} ms, p99 {pct(late,99)} ms, max {max(late) if late else 'n/a'} ms")
print(f"runs: {states}; scheduled time to run finished p50 {pct(done,50)} ms, p99 {pct(done,99)} ms")
PY
