#!/usr/bin/env bash
# satflow's footprint and speed in one run, printed side by side: the stripped release binary
# (with and without default features), idle RSS with the demo's five example workflows and with
# 10,000 scheduled workflows, the disk's raw one-fsync-per-insert SQLite rate and satflow's
# webhook ingest, exchange apply and outbox delivery rates against it, the webhook
# acknowledgement latency at a constant 1,000/s (open loop), and cold start to /healthz 200.
# Figures are printed, never asserted: they depend on the machine and on what else runs on it.
#
#   scripts/bench.sh                 # builds both release binaries, then measures
#   NO_BUILD=1 scripts/bench.sh      # measures target/release/satflow as it is (sizes: that one)
#   BIN=path/to/satflow scripts/bench.sh   # measures that binary (implies NO_BUILD)
#   NO_RATES=1 scripts/bench.sh      # sizes and memory only (no `cargo bench`)
#   N=5000 RATE=1000 SECS=10 WORKFLOWS=10000 SETTLE=10 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
n=${N:-5000}
rate=${RATE:-1000}
secs=${SECS:-10}
many=${WORKFLOWS:-10000}
settle=${SETTLE:-10}

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Size of a binary once stripped (a copy is stripped when the profile did not).
stripped_size() {
  local copy="$work/size.$$"
  cp "$1" "$copy"
  strip "$copy" 2>/dev/null || true
  stat -c %s "$copy"
  rm -f "$copy"
}

mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB (%d bytes)", b / 1048576, b }'; }

# --- the binaries -------------------------------------------------------------------------
if [ -z "${NO_BUILD:-}" ] && [ -z "${BIN:-}" ]; then
  echo "building release without default features ..." >&2
  cargo build --release --quiet --no-default-features --bin satflow
  cp target/release/satflow "$work/satflow-min"
  # The default build last, so target/release/satflow is the one users run.
  echo "building release with default features ..." >&2
  cargo build --release --quiet --bin satflow
fi
cp "${BIN:-target/release/satflow}" "$work/satflow"
bin=$work/satflow
size_default=$(stripped_size "$bin")
if [ -f "$work/satflow-min" ]; then
  size_min=$(stripped_size "$work/satflow-min")
else
  size_min=""
fi

# --- idle RSS -----------------------------------------------------------------------------
# Waits for /healthz 200 from the daemon on $1 (port), at most $2 seconds.
wait_healthy() {
  local port=$1 limit=$2 i
  for i in $(seq 1 $((limit * 20))); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "the daemon on port $port did not answer /healthz 200 within $limit s" >&2
  return 1
}

status_field() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# Starts `satflow run` on $1 (config), waits for health and $settle seconds, then prints
# "rss_kib hwm_kib threads startup_ms".
idle_figures() {
  local config=$1 port=$2 start pid ready
  start=$(date +%s%N)
  "$bin" run -q -c "$config" 2>"$work/daemon.log" &
  pid=$!
  pids+=("$pid")
  wait_healthy "$port" 120
  ready=$((($(date +%s%N) - start) / 1000000))
  sleep "$settle"
  echo "$(status_field $pid VmRSS) $(status_field $pid VmHWM) $(status_field $pid Threads) $ready"
  kill -TERM "$pid"
  wait "$pid" || true
}

# The demo's setup (examples/demo) with its five example workflows, on a free port, against a
# database of its own. Nothing answers at the sandbox's addresses: the daemon idles.
demo=$work/demo
mkdir -p "$demo"
cp -r examples/demo/. "$demo/"
port=$(free_port)
sed -i -e "s|^workflows:.*|workflows: $repo/workflows|" -e "s|^listen:.*|listen: 127.0.0.1:$port|" "$demo/satflow.yaml"
echo "idle: the demo's $(ls workflows/*.yaml | wc -l) example workflows, ${settle} s after /healthz 200 ..." >&2
read -r rss5 hwm5 threads5 ready5 < <(idle_figures "$demo/satflow.yaml" "$port")

# $many workflows, each scheduled once a day at its own minute: all scheduled, none firing
# while this runs (unless the clock crosses one of them).
big=$work/many
mkdir -p "$big/workflows"
port=$(free_port)
cat > "$big/satflow.yaml" <<YAML
database: sqlite://bench.db
listen: 127.0.0.1:$port
email: { dir: mail, from: satflow@example.com, to: me@example.com }
YAML
python3 - "$big/workflows" "$many" <<'PY'
import sys
folder, n = sys.argv[1], int(sys.argv[2])
zones = ["Europe/Zurich", "America/New_York", "Asia/Tokyo", "UTC"]
for i in range(n):
    with open(f"{folder}/w{i}.yaml", "w") as f:
        f.write(f"""name: w{i}
on:
  schedule: {{ cron: "{i % 60} {(i // 60) % 24} * * *", timezone: {zones[i % 4]}, catch_up: skip }}
steps:
  - id: note
    uses: email
    with: {{ subject: "w{i} fired", body: "run {{{{ run.id }}}}" }}
""")
PY
echo "idle: $many scheduled workflows, ${settle} s after /healthz 200 ..." >&2
read -r rssN hwmN threadsN readyN < <(idle_figures "$big/satflow.yaml" "$port")

# --- rates, latency, cold start ----------------------------------------------------------
declare -A f
if [ -z "${NO_RATES:-}" ]; then
  echo "rates and latency (cargo bench --bench footprint) ..." >&2
  cargo bench --quiet --bench footprint -- all "n=$n" "rate=$rate" "secs=$secs" | tee "$work/rates.txt" >&2
  cargo bench --quiet --bench footprint -- coldstart "bin=$bin" runs=5 | tee -a "$work/rates.txt" >&2
  while read -r tag key value; do
    [ "$tag" = FIGURE ] && f[$key]=$value
  done < "$work/rates.txt"
fi
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }'; }
raw=${f[raw_insert_per_s]:-0}

echo
echo "satflow footprint and speed — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
printf '%-52s %s\n' "binary, stripped, default features" "$(mib "$size_default")"
if [ -n "$size_min" ]; then
  printf '%-52s %s\n' "binary, stripped, --no-default-features" "$(mib "$size_min")"
fi
printf '%-52s %s KiB (peak %s KiB, %s threads)\n' "idle RSS, demo's five workflows" "$rss5" "$hwm5" "$threads5"
printf '%-52s %s KiB (peak %s KiB, %s threads)\n' "idle RSS, $many scheduled workflows" "$rssN" "$hwmN" "$threadsN"
printf '%-52s %s ms / %s ms\n' "start to /healthz 200 (five / $many workflows)" "$ready5" "$readyN"
if [ -n "${NO_RATES:-}" ]; then exit 0; fi
printf '%-52s %.0f/s\n' "raw SQLite, one fsync per insert" "$raw"
printf '%-52s %.0f/s (%s raw)\n' "webhook ingest (acknowledged)" "${f[webhook_ingest_per_s]}" "$(ratio "${f[webhook_ingest_per_s]}" "$raw")"
printf '%-52s %.0f/s (%s raw)\n' "exchange events applied" "${f[exchange_apply_per_s]}" "$(ratio "${f[exchange_apply_per_s]}" "$raw")"
printf '%-52s %.0f/s (%s raw)\n' "outbox deliveries to a local sink" "${f[outbox_delivery_per_s]}" "$(ratio "${f[outbox_delivery_per_s]}" "$raw")"
printf '%-52s p50 %s, p99 %s, p99.9 %s, max %s ms (%s failed)\n' "ack latency at a constant $rate/s" "${f[ack_p50_ms]}" "${f[ack_p99_ms]}" "${f[ack_p999_ms]}" "${f[ack_max_ms]}" "${f[ack_failed]}"
printf '%-52s median %s ms, max %s ms\n' "cold start to /healthz 200 (empty setup, 5 runs)" "${f[coldstart_median_ms]}" "${f[coldstart_max_ms]}"
