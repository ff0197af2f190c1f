#!/usr/bin/env bash
# Writes scripts/idle-code.order: the functions `satflow run` executes while it waits, which the
# linker places side by side at the start of the code (build.rs turns the list into a linker
# script for release builds).
#
# Why: an idle daemon runs about half a megabyte of code (its polls: SQLite, sqlx, tokio, the
# scheduler, the outbox, the exchange applier), spread over most of the binary. The kernel maps
# 64 KiB of the page cache around each code page touched, so scattered, that half megabyte kept
# about 4.6 MB of the binary resident; side by side it fits in a handful of those windows.
#
# How: the release binary (symbols kept) runs the demo's setup under valgrind's callgrind;
# counts are zeroed once it answers /healthz and has settled, so only what runs while it waits
# (its passes, and answering /healthz and /metrics as monitoring would) is kept. Symbols are
# matched with their hashes left open, so the list holds across dependency updates; a function
# that is gone is simply not matched (a stale list costs memory, never correctness). Run it
# again after large changes to what the daemon does while it waits.
# Needs valgrind, python3 and curl.
#
#   scripts/idle-code-order.sh            # IDLE=40 seconds measured, SETTLE=5 before
#   IDLE=660 scripts/idle-code-order.sh   # long enough for the 10-minute reconciliation too
#   FRESH=1 scripts/idle-code-order.sh    # a new list instead of adding to the current one
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in valgrind callgrind_control python3 curl; do
  command -v "$tool" >/dev/null || { echo "scripts/idle-code-order.sh needs $tool" >&2; exit 2; }
done
idle=${IDLE:-40}
settle=${SETTLE:-5}
repo=$PWD
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The release profile with its symbols kept, linked without the current list (valgrind reads
# the symbols of `.text` only, and would miss the functions already placed ahead of it).
target=${CARGO_TARGET_DIR:-target}
echo "building release with symbols ..." >&2
SATFLOW_IDLE_CODE_ORDER=off CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --quiet --bin satflow
bin=$work/satflow
cp "$target/release/satflow" "$bin"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cp -r examples/demo "$work/demo"
sed -i -e "s|^workflows:.*|workflows: $repo/workflows|" -e "s|^listen:.*|listen: 127.0.0.1:$port|" "$work/demo/satflow.yaml"

valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/callgrind.out" \
  "$bin" run -q -c "$work/demo/satflow.yaml" 2>"$work/valgrind.log" &
pid=$!
for _ in $(seq 1 600); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; then break; fi
  sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" || { cat "$work/valgrind.log" >&2; exit 1; }
sleep "$settle"
echo "measuring ${idle} s of idle ..." >&2
callgrind_control --zero "$pid" >/dev/null
# An idle daemon still answers its monitoring: /healthz and /metrics every few seconds.
end=$((SECONDS + idle))
while [ "$SECONDS" -lt "$end" ]; do
  curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" || true
  curl -fsS -o /dev/null "http://127.0.0.1:$port/metrics" || true
  sleep 5
done
callgrind_control --dump "$pid" >/dev/null
sleep 1
kill -TERM "$pid"
wait "$pid" || true
pid=""

# The dump written after the zeroing holds only the idle costs: every function of the binary
# with a cost of its own there, busiest first.
cp scripts/idle-code.order "$work/previous.order" 2>/dev/null || true
python3 - "$work" "$bin" > scripts/idle-code.order <<'PY'
import glob, os, re, sys
work, binary = sys.argv[1], sys.argv[2]
previous = f"{work}/previous.order"
dumps = sorted(glob.glob(f"{work}/callgrind.out.*"))
if not dumps:
    sys.exit("no callgrind dump was written")
objects, functions, cost, owner = {}, {}, {}, {}
current, current_object, after_call = None, None, False
for line in open(dumps[-1]):
    m = re.match(r"^(c?)(ob|fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
    if m:
        called, kind, ident, name = m.groups()
        table = objects if kind == "ob" else functions
        if name:
            table[ident] = name
        if not called and kind == "ob":
            current_object = objects.get(ident)
        if not called and kind == "fn":
            current = functions.get(ident)
            owner[current] = current_object
        continue
    if line.startswith("calls="):
        after_call = True
        continue
    if line[:1].isdigit() or line[:1] in "+-*":
        if after_call:
            after_call = False  # the inclusive cost of a call, not the function's own
            continue
        fields = line.split()
        if current and len(fields) >= 2:
            cost[current] = cost.get(current, 0) + int(fields[1])
names = [f for f in cost if owner.get(f) == binary and cost[f] > 0]

def pattern(name):
    """The name as a pattern that outlives a rebuild: callgrind's recursion mark ('N) dropped,
    and the hashes a symbol carries (legacy 17h...E, v0 crate ids Cs..._, LLVM's .N suffixes)
    left open, since they change with any dependency's version or features."""
    name = re.sub(r"'\d+$", "", name)
    suffix = "*" if re.search(r"\.\d+$", name) else ""
    name = re.sub(r"\.\d+$", "", name)
    name = re.sub(r"17h[0-9a-f]{16}E$", "17h*E", name)
    return re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", name) + suffix

patterns = dict.fromkeys(pattern(f) for f in sorted(names, key=lambda f: -cost[f]))
# Rare paths (a contended lock, a growing buffer) run in one measurement and not the next, and
# each one missed keeps 64 KiB of the binary resident: the list only grows, unless FRESH=1.
if os.environ.get("FRESH") != "1" and os.path.exists(previous):
    for line in open(previous):
        if line.strip() and not line.startswith("#"):
            patterns.setdefault(line.strip())
print("# The functions `satflow run` executes while it waits, busiest first, as patterns of their")
print("# symbols (hashes left open): build.rs has the linker place them side by side. Written by")
print("# scripts/idle-code-order.sh; do not edit.")
print("\n".join(p for p in patterns if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.$*]*", p)))
PY
echo "wrote scripts/idle-code.order: $(grep -vc '^#' scripts/idle-code.order) patterns" >&2
