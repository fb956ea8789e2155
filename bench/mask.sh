#!/usr/bin/env bash
# The mask plugin's two builds side by side: Rust (plugins/mask) and Python with componentize-py
# (plugins/mask-py), the same plugin config for both.
#   size      - the two .wasm files
#   compile   - `txgate check` on a config naming one build: it compiles the component with no
#               compile cache (what a gateway's first start or a new module costs); median of
#               ROUNDS runs
#   per call  - one gateway, three routes to the demo bank's GET /accounts/alice (a 51-byte JSON
#               answer): no plugin, the Rust build, the Python build, each plugin masking `id`
#               and redacting `balance`, with the Luhn scan on. wrk at a fixed number of
#               connections, rounds interleaved, the median round reported: req/s, p99, the
#               gateway's CPU per request (/proc/PID/stat) and what the plugin adds over the
#               bare route, and the gateway's own timing of each on-response call
#               (txgate_plugin_duration_seconds, its sum over its count for the run).
# Every route must answer 200 with the masked body before it is measured; a run with any answer
# from 400 up stops the script. Writes the `mask` block of bench/RESULTS.md.
#
# Usage: bench/mask.sh            (env: DURATION=10 CONNECTIONS=16 THREADS=2 ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
BANK_PORT=17301
TXGATE_PORT=17303
ADMIN_PORT=17304

need_tool wrk wrk
plugins/mask-py/install
refuse_busy "$BANK_PORT" "$TXGATE_PORT" "$ADMIN_PORT"
build_release
rustup target add wasm32-wasip2 >/dev/null 2>&1
cargo build -q --release --target wasm32-wasip2 --target-dir target/wasm -p txgate-plugin-mask
RUST_WASM="$PWD/target/wasm/wasm32-wasip2/release/txgate_plugin_mask.wasm"
PY_WASM="$PWD/target/wasm/python/mask_py.wasm"
plugins/mask-py/build "$PY_WASM"

work=$(mktemp -d)
trap 'stop_all; rm -rf "$work"' EXIT

# plugin NAME MODULE [LIMITS]: the mask plugin under NAME, with the benchmark's rules.
plugin() {
  cat <<TOML
[plugins.$1]
module = "$2"
${3:-}
[plugins.$1.config]
rules = [{ path = "\$.id", mask = "keep_last", keep = 2 }, { path = "\$.balance", mask = "redact" }]
luhn_scan = true
TOML
}
# CPython's calls take milliseconds: the Python build gets the budget plugins/mask-py/README.md
# gives it.
PY_LIMITS='timeout_ms = 1000'

# route NAME [PLUGINS]
route() {
  cat <<TOML
[[routes]]
name = "$1"
path_prefix = "/$1/"
strip_prefix = true
upstream = "bank"
${2:+plugins = $2}
TOML
}

# Compile time: `txgate check` on a config with one build.
for build in rust py; do
  module=$RUST_WASM
  [ "$build" = py ] && module=$PY_WASM
  {
    echo "[upstreams.bank]"
    echo "url = \"http://127.0.0.1:$BANK_PORT\""
    plugin "mask_$build" "$module"
    route "r" "[\"mask_$build\"]"
  } >"$work/check-$build.toml"
done
declare -A COMPILE=()
for round in $(seq "$ROUNDS"); do
  for build in rust py; do
    started=$(date +%s%N)
    target/release/txgate check --config "$work/check-$build.toml" >/dev/null
    ms=$(( ($(date +%s%N) - started) / 1000000 ))
    echo "round $round compile $build: $ms ms" >&2
    COMPILE[$build]+="$ms "
  done
done

start_bank "$BANK_PORT" "$work/bank.log"
{
  cat <<CONFIG
[server]
listen = "127.0.0.1:$TXGATE_PORT"
admin_listen = "127.0.0.1:$ADMIN_PORT"
[store]
dir = "$work/store"
[upstreams.bank]
url = "http://127.0.0.1:$BANK_PORT"
CONFIG
  plugin mask_rust "$RUST_WASM"
  plugin mask_py "$PY_WASM" "$PY_LIMITS"
  route bare
  route rust '["mask_rust"]'
  route py '["mask_py"]'
} >"$work/txgate.toml"
start_txgate "$work/txgate.toml" "$work/txgate.log"
# The gateway listens once its plugins are loaded, and compiling CPython takes it tens of seconds.
for _ in $(seq 600); do
  curl -sf -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz" && break
  kill -0 "$TXGATE_PID" 2>/dev/null || { echo "txgate exited; see its log:" >&2; cat "$work/txgate.log" >&2; exit 1; }
  sleep 0.5
done
wait_port "$TXGATE_PORT"

TARGETS="bare rust py"
declare -A PLUGIN=([rust]=mask_rust [py]=mask_py)
# Both builds must really mask, and give the same bytes.
expected='{"balance":"[redacted]","held":0,"id":"***ce","incoming":0}'
for target in rust py; do
  body=$(curl -sf "http://127.0.0.1:$TXGATE_PORT/$target/accounts/alice")
  [ "$body" = "$expected" ] ||
    { echo "$target answers $body, not $expected; see $work/txgate.log" >&2; exit 1; }
done

# hook_seconds PLUGIN: "sum count" of the plugin's on-response timings so far.
hook_seconds() {
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v p="$1" '
    index($0, "txgate_plugin_duration_seconds_sum{plugin=\"" p "\",hook=\"on-response\"}") == 1 { s = $NF }
    index($0, "txgate_plugin_duration_seconds_count{plugin=\"" p "\",hook=\"on-response\"}") == 1 { c = $NF }
    END { printf "%s %s\n", s + 0, c + 0 }'
}

declare -A RPS=() P99=() CPU=() HOOK=()
for round in $(seq "$ROUNDS"); do
  for target in $TARGETS; do
    url="http://127.0.0.1:$TXGATE_PORT/$target/accounts/alice"
    plugin_name=${PLUGIN[$target]:-}
    [ -n "$plugin_name" ] && read -r sum0 count0 < <(hook_seconds "$plugin_name")
    cpu_before=$(cpu_ticks "$TXGATE_PID")
    read -r rps p50 p99 requests bad errors < <(wrk_counts "$url")
    cpu=$(us_per_request $(($(cpu_ticks "$TXGATE_PID") - cpu_before)) "$requests")
    hook=0
    if [ -n "$plugin_name" ]; then
      read -r sum1 count1 < <(hook_seconds "$plugin_name")
      hook=$(awk -v s="$sum1" -v s0="$sum0" -v c="$count1" -v c0="$count0" \
        'BEGIN { printf "%.1f", (c > c0 ? (s - s0) * 1000000 / (c - c0) : 0) }')
    fi
    echo "round $round $target: $rps req/s, p99 $p99 ms, gateway CPU $cpu µs/req," \
      "on-response $hook µs/call, $requests requests, $bad non-2xx, $errors socket errors" >&2
    if [ "$bad" -gt 0 ] || [ "$requests" -eq 0 ]; then
      echo "$target answered $bad of $requests requests with an error status; not a benchmark" >&2
      exit 1
    fi
    RPS[$target]+="$rps "
    P99[$target]+="$p99 "
    CPU[$target]+="$cpu "
    HOOK[$target]+="$hook "
  done
done

cpu() { median ${CPU[$1]}; }
added() { awk -v a="$(cpu "$1")" -v b="$(cpu bare)" 'BEGIN { printf "%.1f", a - b }'; }
size() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

{
  echo "Machine and date: $(machine_line); componentize-py $(componentize-py --version | awk '{print $2}')."
  echo
  echo '```'
  echo "DURATION=$DURATION CONNECTIONS=$CONNECTIONS THREADS=$THREADS ROUNDS=$ROUNDS bench/mask.sh"
  echo '```'
  echo
  echo "| build | .wasm | compile (\`txgate check\`), median ms | req/s | p99 ms | gateway CPU µs/req | CPU the plugin adds, µs/req | on-response, µs/call |"
  echo "|---|---|---|---|---|---|---|---|"
  echo "| no plugin | | | $(median ${RPS[bare]}) | $(median ${P99[bare]}) | $(cpu bare) | | |"
  echo "| Rust | $(mib "$(size "$RUST_WASM")") | $(median ${COMPILE[rust]}) | $(median ${RPS[rust]}) | $(median ${P99[rust]}) | $(cpu rust) | $(added rust) | $(median ${HOOK[rust]}) |"
  echo "| Python | $(mib "$(size "$PY_WASM")") | $(median ${COMPILE[py]}) | $(median ${RPS[py]}) | $(median ${P99[py]}) | $(cpu py) | $(added py) | $(median ${HOOK[py]}) |"
  echo
  echo "- $(ratio_line "Python / Rust, .wasm size" "$(size "$PY_WASM")" "$(size "$RUST_WASM")")"
  echo "- $(ratio_line "Python / Rust, compile time" "$(median ${COMPILE[py]})" "$(median ${COMPILE[rust]})")"
  echo "- $(ratio_line "Python / Rust, on-response per call" "$(median ${HOOK[py]})" "$(median ${HOOK[rust]})")"
  echo "- $(ratio_line "Python / Rust, req/s" "$(median ${RPS[py]})" "$(median ${RPS[rust]})")"
} >"$work/report.md"
echo
cat "$work/report.md"
publish mask "$work/report.md"
