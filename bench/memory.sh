#!/usr/bin/env bash
# Memory: the gateway's resident set size idle, then with SAGAS finished sagas held in memory
# (the store keeps them for retention_secs), measured from /proc/PID/status (VmRSS).
#
# Usage: bench/memory.sh            (env: SAGAS=100000 CONNECTIONS=64)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

SAGAS=${SAGAS:-100000}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=2
A_PORT=17401
B_PORT=17402
TXGATE_PORT=17403
ADMIN_PORT=17404

need_tool wrk wrk
refuse_busy "$A_PORT" "$B_PORT" "$TXGATE_PORT" "$ADMIN_PORT"
build_release
work=$(mktemp -d)
trap 'stop_all; rm -rf "$work"' EXIT
BIG=1000000000000000
target/release/txgate-bank --listen "127.0.0.1:$A_PORT" --accounts "alice=$BIG" --keys-max 200000 >/dev/null 2>&1 &
PIDS+=($!)
target/release/txgate-bank --listen "127.0.0.1:$B_PORT" --accounts "carol=$BIG" --keys-max 200000 >/dev/null 2>&1 &
PIDS+=($!)
cat >"$work/txgate.toml" <<CONFIG
[server]
listen = "127.0.0.1:$TXGATE_PORT"
admin_listen = "127.0.0.1:$ADMIN_PORT"
[store]
dir = "$work/store"
[upstreams.bank_a]
url = "http://127.0.0.1:$A_PORT"
[upstreams.bank_b]
url = "http://127.0.0.1:$B_PORT"
$(transfer_route transfers /transfers)
CONFIG
start_txgate "$work/txgate.toml" "$work/txgate.log"
wait_port "$TXGATE_PORT"
wait_port "$A_PORT"
wait_port "$B_PORT"

rss_mib() { awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$TXGATE_PID/status"; }
finished() { metric_sum "$ADMIN_PORT" txgate_sagas_total; }

cat >"$work/unique.lua" <<'LUA'
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  prefix = args[1] .. "-" .. tid
  counter = 0
  wrk.method = "POST"
  wrk.body = '{"from":"alice","to":"carol","amount":1}'
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  counter = counter + 1
  wrk.headers["X-Request-ID"] = prefix .. "-" .. counter
  return wrk.format(nil, "/transfers")
end
LUA

sleep 1
idle=$(rss_mib)
chunk=0
loaded=0
while [ "$(finished)" -lt "$SAGAS" ]; do
  chunk=$((chunk + 1))
  wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -s "$work/unique.lua" "http://127.0.0.1:$TXGATE_PORT" -- "m$chunk-$RANDOM" >/dev/null &
  sleep 1
  loaded=$(awk -v a="$loaded" -v b="$(rss_mib)" 'BEGIN { print (b > a ? b : a) }')
  wait $!
done
sleep 1
count=$(finished)
held=$(rss_mib)

{
  echo "Machine and date: $(machine_line)."
  echo
  echo '```'
  echo "SAGAS=$SAGAS bench/memory.sh"
  echo '```'
  echo
  echo "VmRSS of the gateway from /proc; the load is wrk -t$THREADS -c$CONNECTIONS posting 2-step transfer sagas in 2 s chunks."
  echo
  echo "| state | sagas in memory | RSS MiB |"
  echo "|---|---|---|"
  echo "| idle, after start | 0 | $idle |"
  echo "| under load (highest sample, one per chunk) | growing | $loaded |"
  echo "| after the load | $count | $held |"
  echo
  awk -v idle="$idle" -v held="$held" -v n="$count" 'BEGIN {
    printf "- per finished saga: %.0f bytes; 100,000 finished sagas: **%.0f MiB**\n", (held - idle) * 1048576 / n, (held - idle) * 100000 / n + idle
  }'
  echo "- store on disk: $(du -sh "$work/store" | cut -f1)"
} >"$work/report.md"
echo
cat "$work/report.md"
publish memory "$work/report.md"
