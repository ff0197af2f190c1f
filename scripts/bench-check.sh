#!/usr/bin/env bash
# Measures `satflow check` on a generated setup of N workflows (default 1000): wall time and
# peak memory, over a few runs. Figures are printed, never asserted.
#   scripts/bench-check.sh [N] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
runs=${2:-5}

cargo build --release --quiet
bin=$PWD/target/release/satflow
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp -r tests/corpus/base/. "$dir/"
rm "$dir/workflows/aaa-good.yaml"

zones=(Europe/Zurich America/New_York Asia/Tokyo UTC Europe/London)
for i in $(seq 1 "$n"); do
  zone=${zones[$((i % ${#zones[@]}))]}
  cat > "$dir/workflows/w$i.yaml" <<YAML
# generated workflow $i
name: w$i
on:
  schedule: { cron: "$((i % 60)) $((i % 24)) * * $((i % 7))", timezone: $zone, catch_up: once }
steps:
  - id: price
    uses: price.quote
    with: { currency: chf, max_age: 10m }
  - id: order
    uses: pocket.order
    with:
      currency: chf
      fee_rate: "0.0$((12 + i % 30))"
      debitor_iban: CH9300762011623852957
      payout: { lightning: mynode }
      active: "{{ steps.price.price < $((50000 + i)) }}"
  - id: mail
    uses: email
    if: "{{ steps.order.created or steps.order.patched }}"
    with:
      subject: "w$i: order {{ steps.order.order_id }}"
      body: "price {{ steps.price.price }} {{ steps.price.currency }}, active {{ steps.order.active }}"
YAML
done
echo "generated $n workflows in $dir ($(du -sh "$dir/workflows" | cut -f1))"

"$bin" check -c "$dir/satflow.yaml" | tail -n 1
for r in $(seq 1 "$runs"); do
  /usr/bin/time -f "run $r: %e s wall, %U s user, %M KiB peak RSS" "$bin" check -c "$dir/satflow.yaml" >/dev/null
done
