#!/usr/bin/env bash
# Memory: the gateway's resident set size idle, under saga load, holding FIRST finished sagas,
# and holding SAGAS finished sagas (the store keeps them for retention_secs, on disk), measured
# from /proc/PID/status (VmRSS). Memory follows the live work, not what the store holds, so the
# two should be close.
#
# Usage: bench/memory.sh            (env: SAGAS=1000000 FIRST=100000 CONNECTIONS=64)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

SAGAS=${SAGAS:-1000000}
FIRST=${FIRST:-100000}
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
start_transfer_banks "$A_PORT" "$B_PORT" "$work"
cat >"$work/txgate.toml" <<CONFIG
[server]
listen = "127.0.0.1:$TXGATE_PORT"
admin_listen = "127.0.0.1:$ADMIN_PORT"
[store]
dir = "$work/store"
$(bank_upstreams "$A_PORT" "$B_PORT")
$(transfer_route transfers /transfers)
CONFIG
start_txgate "$work/txgate.toml" "$work/txgate.log"
wait_port "$TXGATE_PORT"

rss_mib() { awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$TXGATE_PID/status"; }
finished() { metric_sum "$ADMIN_PORT" txgate_sagas_total; }

transfers_lua "$work/unique.lua"

sleep 1
idle=$(rss_mib)
chunk=0
loaded=0
at_first=""
first_count=0
while [ "$(finished)" -lt "$SAGAS" ]; do
  chunk=$((chunk + 1))
  wrk -t"$THREADS" -c"$CONNECTIONS" -d5s -s "$work/unique.lua" "http://127.0.0.1:$TXGATE_PORT" -- "m$chunk-$RANDOM" >/dev/null &
  sleep 3
  loaded=$(awk -v a="$loaded" -v b="$(rss_mib)" 'BEGIN { print (b > a ? b : a) }')
  wait $!
  if [ -z "$at_first" ] && [ "$(finished)" -ge "$FIRST" ]; then
    sleep 1
    first_count=$(finished)
    at_first=$(rss_mib)
  fi
done
sleep 1
count=$(finished)
held=$(rss_mib)
db_bytes=$(stat -c %s "$work/store/txgate.db")

{
  echo "Machine and date: $(machine_line)."
  echo
  echo '```'
  echo "SAGAS=$SAGAS FIRST=$FIRST bench/memory.sh"
  echo '```'
  echo
  echo "VmRSS of the gateway from /proc; the load is wrk -t$THREADS -c$CONNECTIONS posting 2-step transfer sagas in 5 s chunks."
  echo
  echo "| state | finished sagas in the store | RSS MiB |"
  echo "|---|---|---|"
  echo "| idle, after start | 0 | $idle |"
  echo "| under load (highest sample, one per chunk) | growing | $loaded |"
  echo "| after the first chunks | $first_count | $at_first |"
  echo "| after the load | $count | $held |"
  echo
  awk -v a="$at_first" -v b="$held" -v n1="$first_count" -v n2="$count" 'BEGIN {
    printf "- RSS holding %d finished sagas / holding %d: **%.2f×** (goal ≤ 1.2×; ≤ 100 MiB either way)\n", n2, n1, b / a
  }'
  awk -v bytes="$db_bytes" -v n="$count" 'BEGIN {
    printf "- store on disk: %.0f MiB in txgate.db, **%.0f bytes per saga** (row, record and indexes)\n", bytes / 1048576, bytes / n
  }'
} >"$work/report.md"
echo
cat "$work/report.md"
publish memory "$work/report.md"
