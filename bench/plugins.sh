#!/usr/bin/env bash
# Plugin overhead through the real pipeline: the same plain route to the demo bank, without
# plugins and with three no-op plugins (each implements on-request), measured in the same run
# with interleaved wrk rounds. The median round of each is reported, with the ratio.
#
# Usage: bench/plugins.sh            (env: DURATION=10 CONNECTIONS=64 THREADS=2 ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
BANK_PORT=17201
TXGATE_PORT=17203
ADMIN_PORT=17204

need_tool wrk wrk
refuse_busy "$BANK_PORT" "$TXGATE_PORT" "$ADMIN_PORT"
build_release
cargo build -q --release --target wasm32-wasip2 -p txgate-test-noop --target-dir target/wasm
NOOP="$PWD/target/wasm/wasm32-wasip2/release/txgate_test_noop.wasm"

work=$(mktemp -d)
trap 'stop_all; rm -rf "$work"' EXIT
start_bank "$BANK_PORT" "$work/bank.log"

cat >"$work/txgate.toml" <<CONFIG
[server]
listen = "127.0.0.1:$TXGATE_PORT"
admin_listen = "127.0.0.1:$ADMIN_PORT"
[store]
dir = "$work/store"
[upstreams.bank]
url = "http://127.0.0.1:$BANK_PORT"
[plugins.noop_a]
module = "$NOOP"
[plugins.noop_b]
module = "$NOOP"
[plugins.noop_c]
module = "$NOOP"
[[routes]]
name = "bare"
path_prefix = "/bare/"
strip_prefix = true
upstream = "bank"
[[routes]]
name = "plugged"
path_prefix = "/plugged/"
strip_prefix = true
upstream = "bank"
plugins = ["noop_a", "noop_b", "noop_c"]
CONFIG
start_txgate "$work/txgate.toml" "$work/txgate.log"
wait_port "$TXGATE_PORT"

declare -A RPS P99
for round in $(seq "$ROUNDS"); do
  for target in bare plugged; do
    read -r rps p50 p99 < <(run_wrk "http://127.0.0.1:$TXGATE_PORT/$target/accounts/alice")
    RPS[$target]+="$rps "
    P99[$target]+="$p99 "
    echo "round $round $target: $rps req/s, p50 $p50 ms, p99 $p99 ms" >&2
  done
done

echo
echo "machine: $(machine_line)"
echo "command: DURATION=$DURATION CONNECTIONS=$CONNECTIONS THREADS=$THREADS ROUNDS=$ROUNDS bench/plugins.sh"
echo
echo "| route | req/s | p99 ms |"
echo "|---|---|---|"
for target in bare plugged; do
  echo "| $target | $(median ${RPS[$target]}) | $(median ${P99[$target]}) |"
done
echo
ratio_line "three no-op plugins / none, req/s" "$(median ${RPS[plugged]})" "$(median ${RPS[bare]})"
