#!/usr/bin/env bash
# Soak test (not in CI): the release daemon under a mixed load for a while, with periodic
# SIGKILL + restart, a disk that fills and empties, and a database locked by another process.
# Prints what was lost and doubled, RSS over time and the longest /healthz outage. Figures are
# printed, never asserted.
#
#   scripts/soak.sh [--minutes N] [--kill-every SECONDS] [--keep]
#
# Load: a signed Pocket webhook (unique exchange id) every ~0.1 s via curl, a manual trigger of a
# one-step http.post workflow every ~0.5 s. Lost: a webhook answered 200 that is not in the
# inbox, a queued run whose POST never reached the sink. Doubled: a webhook stored twice, an
# Idempotency-Key the sink received more than once (at-least-once delivery may repeat a POST
# whose outcome a SIGKILL cut off; the key lets a receiver drop it).
# The disk: with root and a mountable tmpfs the database lives on a 16 MiB tmpfs that a filler
# file fills for 20 s every 3 minutes; otherwise that part is skipped (printed).
# SATFLOW_BIN=path uses that binary instead of building target/release/satflow.
set -uo pipefail
cd "$(dirname "$0")/.."

minutes=30
kill_every=20
keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --kill-every) kill_every=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "usage: $0 [--minutes N] [--kill-every SECONDS] [--keep]" >&2; exit 2 ;;
  esac
done
for tool in curl openssl sqlite3 python3; do
  command -v $tool >/dev/null || { echo "soak: needs $tool" >&2; exit 2; }
done

if [ -z "${SATFLOW_BIN:-}" ]; then
  cargo build --release --quiet || exit 1
  SATFLOW_BIN=$PWD/target/release/satflow
fi
bin=$SATFLOW_BIN
dir=$(mktemp -d /tmp/satflow-soak.XXXXXX)
data=$dir/data
mkdir -p "$data"
disk=none
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=16m satflow-soak "$data" 2>/dev/null; then
  disk=tmpfs
fi
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  [ -n "${daemon:-}" ] && kill -9 "$daemon" 2>/dev/null
  wait 2>/dev/null
  [ $disk = tmpfs ] && umount "$data" 2>/dev/null
  if [ $keep = 1 ]; then echo "kept $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listen=$(port)
sink_port=$(port)
secret=soak-secret-0123456789

# The sink: answers 200 and logs each Idempotency-Key.
cat > "$dir/sink.py" <<'PY'
import http.server, sys
log = open(sys.argv[2], "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        log.write((self.headers.get("Idempotency-Key") or "-") + "\n")
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$dir/sink.py" "$sink_port" "$dir/sink.log" & pids+=($!)

cat > "$dir/satflow.yaml" <<YAML
database: sqlite://$data/satflow.db
listen: 127.0.0.1:$listen
pocket: { base_url: "http://127.0.0.1:9", client_id: soak, webhook_secret: "$secret" }
alerts: []
engine: { lease: 2s, shutdown_grace: 5s }
outbox: { base_delay: 200ms, max_delay: 5s, max_attempts: 1000 }
YAML
mkdir -p "$dir/workflows"
cat > "$dir/workflows/soak.yaml" <<YAML
name: soak
steps:
  - id: post
    uses: http.post
    with:
      url: http://127.0.0.1:$sink_port/effect
      json: { run: "{{ run.id }}" }
YAML
"$bin" check -c "$dir/satflow.yaml" >/dev/null || { "$bin" check -c "$dir/satflow.yaml"; exit 1; }

start_daemon() {
  "$bin" run -c "$dir/satflow.yaml" >>"$dir/daemon.log" 2>&1 &
  daemon=$!
  echo "$daemon" > "$dir/daemon.pid"
}
start_daemon

end=$(( $(date +%s) + minutes * 60 ))
: > "$dir/webhooks.acked"; : > "$dir/runs.queued"; : > "$dir/health.log"; : > "$dir/rss.log"

# Signed webhooks, each with a new exchange id.
(
  n=0
  while [ "$(date +%s)" -lt "$end" ]; do
    n=$((n + 1)); id=$(printf '50a4c0de-0000-4000-8000-%012d' "$n")
    body="{\"event\":\"exchange.executed\",\"payload\":{\"exchange_id\":\"$id\",\"order_id\":\"64decab6-4129-4fe7-9f6e-1db68283f5ce\",\"pair\":\"btc/eur\",\"type\":\"buy\",\"cost\":10.00,\"amount\":0.00012345,\"rate\":81000.00,\"fee\":0.12,\"fee_rate\":0.012,\"executed_on\":\"2027-01-04T09:00:00.000Z\",\"action\":null,\"reason\":null,\"payout\":null}}"
    sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/.*= //')
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Content-Type: application/json" \
      -H "X-Signature-256: sha256=$sig" --data-binary "$body" "http://127.0.0.1:$listen/webhooks/pocket")
    [ "$code" = 200 ] && echo "$id" >> "$dir/webhooks.acked"
    sleep 0.1
  done
) & pids+=($!)

# Manual triggers.
(
  while [ "$(date +%s)" -lt "$end" ]; do
    out=$("$bin" trigger soak -c "$dir/satflow.yaml" 2>/dev/null) && echo "$out" | sed -n 's/^queued run \([0-9]*\) .*/\1/p' >> "$dir/runs.queued"
    sleep 0.5
  done
) & pids+=($!)

# /healthz once a second; RSS every 10 s.
(
  t=0
  while [ "$(date +%s)" -lt "$end" ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$listen/healthz")
    echo "$(date +%s.%N | cut -c1-14) $code" >> "$dir/health.log"
    if [ $((t % 10)) = 0 ]; then
      p=$(cat "$dir/daemon.pid")
      rss=$(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null)
      echo "$t ${rss:-0}" >> "$dir/rss.log"
    fi
    t=$((t + 1))
    sleep 1
  done
) & pids+=($!)

# A database locked by another process for 10 s, every 2 minutes (offset by a minute).
(
  sleep 60
  while [ "$(date +%s)" -lt "$end" ]; do
    (echo "BEGIN EXCLUSIVE;"; sleep 10; echo "COMMIT;") | sqlite3 "$data/satflow.db" >/dev/null 2>&1
    echo "locked $(date +%s)" >> "$dir/events.log"
    sleep 110
  done
) & pids+=($!)

# The disk filled for 20 s, every 3 minutes (offset by 90 s).
if [ $disk = tmpfs ]; then
  (
    sleep 90
    while [ "$(date +%s)" -lt "$end" ]; do
      dd if=/dev/zero of="$data/filler" bs=64k 2>/dev/null
      echo "full $(date +%s)" >> "$dir/events.log"
      sleep 20
      rm -f "$data/filler"
      sleep 160
    done
  ) & pids+=($!)
fi

# The chaos: SIGKILL and restart at a random moment within every kill_every seconds.
kills=0
while [ "$(date +%s)" -lt "$end" ]; do
  sleep $(( (RANDOM % kill_every) + 1 ))
  [ "$(date +%s)" -lt "$end" ] || break
  kill -9 "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null
  kills=$((kills + 1))
  start_daemon
done
wait "${pids[1]}" "${pids[2]}" 2>/dev/null

# Drain: no more chaos; give queued runs time to deliver.
rm -f "$data/filler"
queued=$(sort -un "$dir/runs.queued" | wc -l)
for _ in $(seq 1 60); do
  [ "$(sort -u "$dir/sink.log" | grep -c '^run/')" -ge "$queued" ] && break
  sleep 1
done
kill -TERM "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; daemon=

acked=$(sort -u "$dir/webhooks.acked" | wc -l)
sqlite3 "$data/satflow.db" "SELECT exchange_id FROM webhook_inbox" | sort > "$dir/webhooks.stored"
wh_lost=$(sort -u "$dir/webhooks.acked" | comm -23 - <(sort -u "$dir/webhooks.stored") | wc -l)
wh_doubled=$(uniq -d "$dir/webhooks.stored" | wc -l)
sort -un "$dir/runs.queued" | sed 's|^|run/|; s|$|/step/post|' > "$dir/keys.expected"
run_lost=$(comm -23 <(sort -u "$dir/keys.expected") <(sort -u "$dir/sink.log") | wc -l)
run_doubled=$(sort "$dir/sink.log" | uniq -d | wc -l)
deliveries=$(wc -l < "$dir/sink.log")

echo "soak: $minutes min, $kills SIGKILLs, disk filling: $disk"
echo "webhooks: $acked acknowledged, lost $wh_lost, stored twice $wh_doubled"
echo "runs: $queued queued, $deliveries deliveries, lost $run_lost, keys delivered more than once $run_doubled"
awk '{ if ($2 != 200) { if (!down) { down = $1 } } else if (down) { d = $1 - down; if (d > max) max = d; down = 0 } }
     END { if (down) { d = $1 - down; if (d > max) max = d }; printf "longest /healthz outage: %.1f s (polled every 1 s; a poll times out after 2 s)\n", max }' "$dir/health.log"
awk '{ printf "%s%d s: %d MiB", (NR > 1 ? ", " : "RSS over time: "), $1, $2 / 1024 } END { print "" }' "$dir/rss.log"
echo "database locked $(grep -c '^locked' "$dir/events.log" 2>/dev/null || echo 0) times for 10 s, disk filled $(grep -c '^full' "$dir/events.log" 2>/dev/null || echo 0) times for 20 s"
awk '{ n[$2]++ } END { printf "/healthz polls:"; for (c in n) printf " %s×%d", c, n[c]; print " (000: no answer within 2 s)" }' "$dir/health.log"
