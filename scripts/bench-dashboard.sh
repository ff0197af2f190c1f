#!/usr/bin/env bash
# How long the dashboard's pages take with N exchanges (10,000 by default) in the database: each
# page is asked for R times (5) over loopback with a logged-in session, and the median and the
# slowest time are printed in ms. Figures are printed, never asserted.
#   scripts/bench-dashboard.sh [N] [R]          (PROFILE=release for a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
rounds=${2:-5}
profile=${PROFILE:-debug}

if [ "$profile" = release ]; then cargo build --release --quiet; else cargo build --quiet; fi
bin=$PWD/target/$profile/satflow
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$dir/workflows"
cat > "$dir/satflow.yaml" <<YAML
database: sqlite://bench.db
listen: 127.0.0.1:$port
email: { dir: mail, from: satflow@example.com, to: me@example.com }
YAML
cd "$dir"
echo "bench-password" | "$bin" user add bench --role admin >/dev/null
python3 - bench.db "$n" <<'PY'
import json, sqlite3, sys
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
t0 = 1_767_225_600_000  # 2026-01-01
rows, events = [], []
for i in range(n):
    xid = f"00000000-0000-4000-8000-{i:012d}"
    at = t0 + i * 3_600_000
    state = "executed" if i % 50 == 0 else "settled"
    payout = None if state == "executed" else {"amount": 0.00086, "bitcoin_address": "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", "fee": 0.0000019, "txid": f"{i:064x}"}
    raw = {"id": xid, "order_id": "bench-order", "pair": "btc/chf", "type": "buy", "cost": "50.00",
           "executed_on": f"2026-01-01T00:00:00Z", "amount": "0.00086666", "rate": "57000.00", "fee": "0.60",
           "action": None, "reason": None, "payout": payout}
    rows.append((xid, "bench-order", state, "btc/chf", "50.00", "0.00086666", "57000.00", "0.60",
                 json.dumps(payout) if payout else None, json.dumps(raw), at, at))
    events.append((xid, "exchange.executed", "webhook", at, json.dumps(raw)))
c.executemany("INSERT INTO exchanges (id, order_id, state, pair, cost, amount, rate, fee, payout_json, raw_json, first_seen_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
cols = [r[1] for r in c.execute("PRAGMA table_info(exchange_events)")]
if {"exchange_id", "event", "source", "recorded_at", "payload"} <= set(cols) and "body_hash" in cols:
    c.executemany("INSERT INTO exchange_events (exchange_id, event, source, recorded_at, payload, body_hash) VALUES (?,?,?,?,?,?)",
                  [e + (f"h{i}",) for i, e in enumerate(events)])
c.commit()
PY
"$bin" run >daemon.log 2>&1 &
pid=$!
site=http://127.0.0.1:$port
for _ in $(seq 1 300); do curl -fs "$site/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
csrf=$(curl -s -c jar -b jar "$site/login" | sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p' | head -1)
curl -s -c jar -b jar -o /dev/null --data "csrf=$csrf&name=bench&password=bench-password" "$site/login"
echo "dashboard pages with $n exchanges ($profile build), $rounds requests each (the slowest includes the first, before the ledger is cached):"
for path in / /exchanges "/exchanges?page=100" "/exchanges/00000000-0000-4000-8000-000000005000" /runs /outbox /report "/report?page=150" /report.csv /approvals /audit; do
  times=()
  for _ in $(seq 1 "$rounds"); do
    code_time=$(curl -s -b jar -o /dev/null -w '%{http_code} %{time_total}' "$site$path")
    [ "${code_time%% *}" = 200 ] || { echo "$path answered ${code_time%% *}" >&2; exit 1; }
    times+=("${code_time#* }")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v p="$path" '{ t[NR] = $1 * 1000 } END { printf "  %-55s median %7.1f ms   slowest %7.1f ms\n", p, t[int((NR + 1) / 2)], t[NR] }' 
done
