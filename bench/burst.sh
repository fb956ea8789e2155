#!/usr/bin/env bash
# Memory after bursts: BURSTS bursts of CLIENTS concurrent clients (bench/burst.py, a connection
# each) on a plugin route, the gateway's VmRSS sampled before, during (the highest of samples
# every 100 ms), 1 s after and SETTLE_S after each burst. Two routes, each in a gateway of its
# own: `durable` posts through the idempotency plugin, whose calls wait for the store's group
# commit, so each holds a plugin instance meanwhile; `light` gets through the rate limiter, whose
# calls finish at once.
#
# Usage: bench/burst.sh     (env: CLIENTS=2000 BURSTS=8 SETTLE_S=12; to measure another build:
#                            TXGATE=its binary, PLUGIN_DIR=its rate_limit.wasm and
#                            idempotency.wasm, BUILD=its name in the report, BLOCK=the RESULTS.md
#                            block to write, `burst` by default)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

CLIENTS=${CLIENTS:-2000}
BURSTS=${BURSTS:-8}
SETTLE_S=${SETTLE_S:-12}
TXGATE=${TXGATE:-target/release/txgate}
PLUGIN_DIR=$(realpath "${PLUGIN_DIR:-target/plugins}")
BANK_PORT=17501
TXGATE_PORT=17502
ADMIN_PORT=17503

refuse_busy "$BANK_PORT" "$TXGATE_PORT" "$ADMIN_PORT"
ulimit -n $((CLIENTS * 3 + 1024))
if [ "$TXGATE" = target/release/txgate ]; then
  build_release
  plugins/build >/dev/null
else
  cargo build --release -q -p txgate-bank
fi
work=$(mktemp -d)
trap 'stop_all; rm -rf "$work"' EXIT
start_bank "$BANK_PORT" "$work/bank.log"

# config ROUTE: a gateway whose one route `ROUTE` goes through its plugin. The upstream closes
# idle connections after 5 s (30 s by default), so what the upstream pool keeps after a burst
# is gone by the time "settled" is sampled.
config() {
  cat <<TOML
[server]
listen = "127.0.0.1:$TXGATE_PORT"
admin_listen = "127.0.0.1:$ADMIN_PORT"
max_connections_per_client = $((CLIENTS * 2))
[store]
dir = "$work/store-$1"
[upstreams.bank]
url = "http://127.0.0.1:$BANK_PORT"
idle_timeout_ms = 5000
[plugins.idempotency]
module = "$PLUGIN_DIR/idempotency.wasm"
[plugins.rate_limit]
module = "$PLUGIN_DIR/rate_limit.wasm"
state = "volatile"
[plugins.rate_limit.config]
key = "route"
per_second = 1000000
burst = 1000000
[[routes]]
name = "durable"
path_prefix = "/durable/"
strip_prefix = true
upstream = "bank"
plugins = ["idempotency"]
[[routes]]
name = "light"
path_prefix = "/light/"
strip_prefix = true
upstream = "bank"
plugins = ["rate_limit"]
TOML
}

rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# run ROUTE METHOD PATH: one gateway, BURSTS bursts; prints a table row per burst.
run() {
  local route=$1 method=$2 path=$3 pid peak sample answers
  config "$route" >"$work/$route.toml"
  TXGATE_LOG=warn "$TXGATE" serve --config "$work/$route.toml" >"$work/$route.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_port "$TXGATE_PORT"
  until curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null; do sleep 0.05; done
  sleep 1
  echo "| $route | idle | | $(rss_mib "$pid") | | | |"
  for n in $(seq "$BURSTS"); do
    METHOD=$method python3 bench/burst.py "$TXGATE_PORT" "$path" "$CLIENTS" >"$work/burst.json" &
    local client=$!
    peak=0
    while kill -0 "$client" 2>/dev/null; do
      sample=$(rss_mib "$pid")
      peak=$(awk -v a="$peak" -v b="$sample" 'BEGIN { print (b > a ? b : a) }')
      sleep 0.1
    done
    wait "$client"
    answers=$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(", ".join(f"{k}: {v}" for k, v in sorted(r["answers"].items())), "in", r["elapsed_ms"], "ms")' "$work/burst.json")
    sleep 1
    local after=$(rss_mib "$pid")
    sleep $((SETTLE_S - 1))
    echo "| $route | $n | $answers | | $peak | $after | $(rss_mib "$pid") |"
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

{
  echo "Machine and date: $(machine_line). Build: ${BUILD:-this tree}."
  echo
  echo '```'
  echo "${BUILD:+TXGATE=... PLUGIN_DIR=... BUILD=\"$BUILD\" BLOCK=${BLOCK:-burst} }CLIENTS=$CLIENTS BURSTS=$BURSTS SETTLE_S=$SETTLE_S bench/burst.sh"
  echo '```'
  echo
  echo "VmRSS of the gateway in MiB; each burst is $CLIENTS concurrent clients, one connection each (\`bench/burst.py\`)."
  echo
  echo "| route | burst | answers | idle | highest during | 1 s after | ${SETTLE_S} s after |"
  echo "|---|---|---|---|---|---|---|"
  run durable POST /durable/echo
  run light GET /light/accounts/alice
} | tee "$work/report.md"
publish "${BLOCK:-burst}" "$work/report.md"
