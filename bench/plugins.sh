#!/usr/bin/env bash
# Plugin overhead, in one run on loopback against the same backend (the demo bank):
#   txgate bare      - a plain route, no plugins
#   txgate noops     - the same route with three no-op plugins (each implements on-request)
#   txgate same-work - the same route with the shipped rate_limit (GCRA on the route, volatile
#                      state) and add_header plugins
#   envoy bare       - Envoy with the router filter only
#   envoy same-work  - Envoy with a proxy-wasm filter (bench/envoy-filter, V8) doing that same
#                      work: a GCRA limit in shared data updated by compare-and-swap, and a header
#                      on the request and the response
# Rounds are interleaved so drift hits all alike; the median round of each is reported. What
# matters is each product's loss against its own bare proxy, measured in the same run.
# Writes the `plugins` block of bench/RESULTS.md.
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
ENVOY_BARE_PORT=17205
ENVOY_WORK_PORT=17206
ENVOY_ADMIN_PORTS=(17207 17208)
# Limits far above what two cores can send: the work is done on every request, none is refused.
RATE=1000000000

need_tool wrk wrk
refuse_busy "$BANK_PORT" "$TXGATE_PORT" "$ADMIN_PORT" "$ENVOY_BARE_PORT" "$ENVOY_WORK_PORT" "${ENVOY_ADMIN_PORTS[@]}"
need_envoy
build_release
rustup target add wasm32-wasip1 wasm32-wasip2 >/dev/null 2>&1
cargo build -q --release --target wasm32-wasip2 --target-dir target/wasm \
  -p txgate-test-noop -p txgate-plugin-rate-limit -p txgate-plugin-add-header
cargo build -q --release --target wasm32-wasip1 --target-dir target/wasm -p txgate-bench-envoy-filter
WASM2="$PWD/target/wasm/wasm32-wasip2/release"
FILTER="$PWD/target/wasm/wasm32-wasip1/release/txgate_bench_envoy_filter.wasm"

work=$(mktemp -d)
trap 'stop_all; [ -n "${KEEP_LOGS:-}" ] && cp -r "$work" /tmp/bench-plugins-logs; rm -rf "$work"' EXIT
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
module = "$WASM2/txgate_test_noop.wasm"
[plugins.noop_b]
module = "$WASM2/txgate_test_noop.wasm"
[plugins.noop_c]
module = "$WASM2/txgate_test_noop.wasm"
[plugins.rate_limit]
module = "$WASM2/txgate_plugin_rate_limit.wasm"
state = "volatile"
[plugins.rate_limit.config]
key = "route"
per_second = $RATE
burst = $RATE
[plugins.add_header]
module = "$WASM2/txgate_plugin_add_header.wasm"
[plugins.add_header.config]
name = "x-served-by"
value = "txgate"
[[routes]]
name = "bare"
path_prefix = "/bare/"
strip_prefix = true
upstream = "bank"
[[routes]]
name = "noops"
path_prefix = "/noops/"
strip_prefix = true
upstream = "bank"
plugins = ["noop_a", "noop_b", "noop_c"]
[[routes]]
name = "work"
path_prefix = "/work/"
strip_prefix = true
upstream = "bank"
plugins = ["rate_limit", "add_header"]
CONFIG
start_txgate "$work/txgate.toml" "$work/txgate.log"
envoy_config "$ENVOY_BARE_PORT" "${ENVOY_ADMIN_PORTS[0]}" "$BANK_PORT" >"$work/envoy-bare.yaml"
envoy_config "$ENVOY_WORK_PORT" "${ENVOY_ADMIN_PORTS[1]}" "$BANK_PORT" "$FILTER" \
  "{\"per_second\": $RATE, \"burst\": $RATE, \"header\": \"x-served-by\", \"value\": \"envoy\"}" \
  >"$work/envoy-work.yaml"
start_envoy "$work/envoy-bare.yaml" "$work/envoy-bare.log"
start_envoy "$work/envoy-work.yaml" "$work/envoy-work.log"
wait_port "$TXGATE_PORT"
wait_port "$ENVOY_BARE_PORT"
wait_port "$ENVOY_WORK_PORT"
# The filter must really run: its header on the answer proves it.
sleep 1
curl -sfi "http://127.0.0.1:$ENVOY_WORK_PORT/accounts/alice" | grep -qi '^x-served-by: envoy' ||
  { echo "the Envoy filter is not running; see $work/envoy-work.log" >&2; exit 1; }
curl -sfi "http://127.0.0.1:$TXGATE_PORT/work/accounts/alice" | grep -qi '^x-served-by: txgate' ||
  { echo "the txgate plugins are not running; see $work/txgate.log" >&2; exit 1; }

TARGETS="txgate-bare txgate-noops txgate-work envoy-bare envoy-work"
declare -A URL=(
  [txgate-bare]="http://127.0.0.1:$TXGATE_PORT/bare/accounts/alice"
  [txgate-noops]="http://127.0.0.1:$TXGATE_PORT/noops/accounts/alice"
  [txgate-work]="http://127.0.0.1:$TXGATE_PORT/work/accounts/alice"
  [envoy-bare]="http://127.0.0.1:$ENVOY_BARE_PORT/accounts/alice"
  [envoy-work]="http://127.0.0.1:$ENVOY_WORK_PORT/accounts/alice"
)
declare -A RPS P99
for round in $(seq "$ROUNDS"); do
  for target in $TARGETS; do
    read -r rps p50 p99 < <(run_wrk "${URL[$target]}")
    RPS[$target]+="$rps "
    P99[$target]+="$p99 "
    echo "round $round $target: $rps req/s, p50 $p50 ms, p99 $p99 ms" >&2
  done
done

med() { median ${RPS[$1]}; }
{
  echo "Machine and date: $(machine_line); Envoy $ENVOY_VERSION with V8."
  echo
  echo '```'
  echo "DURATION=$DURATION CONNECTIONS=$CONNECTIONS THREADS=$THREADS ROUNDS=$ROUNDS bench/plugins.sh"
  echo '```'
  echo
  echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency; median of $ROUNDS interleaved rounds."
  echo
  echo "| target | req/s | p99 ms |"
  echo "|---|---|---|"
  for target in $TARGETS; do
    echo "| $target | $(med "$target") | $(median ${P99[$target]}) |"
  done
  echo
  echo "- $(ratio_line "txgate, three no-op plugins / bare" "$(med txgate-noops)" "$(med txgate-bare)" | bold_ratio)"
  echo "- $(ratio_line "txgate, rate limit + header / bare" "$(med txgate-work)" "$(med txgate-bare)" | bold_ratio) (anchors: Envoy's Wasm pass-through filter, published −5%, i.e. 0.95×; Istio's Wasm telemetry, published more than 10% loss)"
  echo "- $(ratio_line "envoy, rate limit + header filter / bare" "$(med envoy-work)" "$(med envoy-bare)" | bold_ratio) (the same work in Envoy, measured in this run)"
  echo "- $(ratio_line "txgate with plugins / envoy with filter, req/s" "$(med txgate-work)" "$(med envoy-work)" | bold_ratio)"
} >"$work/report.md"
echo
cat "$work/report.md"
publish plugins "$work/report.md"
