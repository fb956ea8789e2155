#!/usr/bin/env bash
# Recovery after SIGKILL: SAGAS transfer sagas are left unfinished (their debit done at bank A,
# their credit hanging at bank B, which answers nothing for ten minutes), the gateway is killed
# with SIGKILL, bank B comes back healthy, and the gateway is started again on the same store.
# Measured from the new process's start: when /readyz first answers 200, and when the last
# recovered saga has finished. Then every saga must be completed and the books must balance
# (alice debited and carol credited exactly SAGAS times).
# Writes the `recovery` block of bench/RESULTS.md.
#
# Usage: bench/recovery.sh            (env: SAGAS=10000 CONNECTIONS=200)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

SAGAS=${SAGAS:-10000}
CONNECTIONS=${CONNECTIONS:-200}
THREADS=2
A_PORT=17501
B_PORT=17502
TXGATE_PORT=17503
ADMIN_PORT=17504
START=1000000000
# How long the recovered sagas may take before the run is declared failed.
FINISH_WAIT_S=120

need_tool wrk wrk
need_tool jq jq
refuse_busy "$A_PORT" "$B_PORT" "$TXGATE_PORT" "$ADMIN_PORT"
build_release
work=$(mktemp -d)
trap 'stop_all; rm -rf "$work"' EXIT

bank() {
  target/release/txgate-bank --listen "127.0.0.1:$1" --accounts "$2=$START" --keys-max 200000 \
    >>"$work/bank-$1.log" 2>&1 &
  PIDS+=($!)
  BANK_PID=$!
  wait_port "$1"
}
bank "$A_PORT" alice
bank "$B_PORT" carol
B_PID=$BANK_PID

cat >"$work/txgate.toml" <<CONFIG
[server]
listen = "127.0.0.1:$TXGATE_PORT"
admin_listen = "127.0.0.1:$ADMIN_PORT"
# Clients get 202 (pending) after 100 ms, so the load is not held up by the hanging bank.
request_timeout_ms = 100
[store]
dir = "$work/store"
[upstreams.bank_a]
url = "http://127.0.0.1:$A_PORT"
[upstreams.bank_b]
url = "http://127.0.0.1:$B_PORT"
timeout_ms = 600000
$(transfer_route transfers /transfers)
CONFIG

metric() { metric_sum "$ADMIN_PORT" "$1[{ ]"; }
balance() { curl -s "http://127.0.0.1:$1/accounts/$2" | jq .balance; }
now_ms() { date +%s%3N; }

# Every thread sends its share of distinct X-Request-IDs once, then stops.
cat >"$work/load.lua" <<'LUA'
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  share = tonumber(args[1])
  counter = 0
  done = 0
  wrk.method = "POST"
  wrk.body = '{"from":"alice","to":"carol","amount":1}'
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  local id = counter % share
  counter = counter + 1
  wrk.headers["X-Request-ID"] = "recovery-" .. tid .. "-" .. id
  return wrk.format(nil, "/transfers")
end
function response()
  done = done + 1
  if done >= share then wrk.thread:stop() end
end
LUA

start_txgate "$work/txgate.toml" "$work/txgate-1.log"
wait_port "$TXGATE_PORT"
curl -sf -X POST "http://127.0.0.1:$B_PORT/_faults" -H 'content-type: application/json' \
  -d '{"kind": "latency", "latency_ms": 600000, "path_prefix": "/credit"}' >/dev/null
echo "starting $SAGAS sagas that cannot finish ..." >&2
# wrk keeps its connections open until -d runs out even after its threads stop, so it is
# stopped as soon as every saga has started.
wrk -t"$THREADS" -c"$CONNECTIONS" -d120s -s "$work/load.lua" "http://127.0.0.1:$TXGATE_PORT" \
  -- "$((SAGAS / THREADS))" >/dev/null &
wrk_pid=$!
for _ in $(seq 1200); do
  [ "$(metric txgate_sagas_in_flight)" -ge "$SAGAS" ] && break
  sleep 0.1
done
sleep 0.5
kill "$wrk_pid" 2>/dev/null || true
wait "$wrk_pid" 2>/dev/null || true
in_flight=$(metric txgate_sagas_in_flight)
echo "unfinished before the kill: $in_flight" >&2
[ "$in_flight" -eq "$SAGAS" ] || { echo "expected $SAGAS unfinished sagas" >&2; exit 1; }

kill -9 "$TXGATE_PID"
kill -9 "$B_PID"
sleep 0.2
bank "$B_PORT" carol
store_size=$(du -sh "$work/store" | cut -f1)

started=$(now_ms)
start_txgate "$work/txgate.toml" "$work/txgate-2.log"
until curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null 2>&1; do
  sleep 0.01
  if [ $(($(now_ms) - started)) -gt $((FINISH_WAIT_S * 1000)) ]; then
    echo "/readyz never answered 200; see $work/txgate-2.log" >&2
    exit 1
  fi
done
ready_ms=$(($(now_ms) - started))
until [ "$(metric txgate_sagas_total)" -ge "$SAGAS" ] && [ "$(metric txgate_sagas_in_flight)" -eq 0 ]; do
  sleep 0.05
  if [ $(($(now_ms) - started)) -gt $((FINISH_WAIT_S * 1000)) ]; then
    echo "sagas still unfinished after ${FINISH_WAIT_S}s" >&2
    exit 1
  fi
done
finished_ms=$(($(now_ms) - started))
completed=$(metric_sum "$ADMIN_PORT" 'txgate_sagas_total[{].*completed')
alice=$(balance "$A_PORT" alice)
carol=$(balance "$B_PORT" carol)
books="alice $((START - alice)) debited, carol $((carol - START)) credited"
if [ "$completed" -ne "$SAGAS" ] || [ $((START - alice)) -ne "$SAGAS" ] || [ $((carol - START)) -ne "$SAGAS" ]; then
  echo "recovery lost or repeated work: $completed completed, $books" >&2
  exit 1
fi

{
  echo "Machine and date: $(machine_line)."
  echo
  echo '```'
  echo "SAGAS=$SAGAS CONNECTIONS=$CONNECTIONS bench/recovery.sh"
  echo '```'
  echo
  echo "$SAGAS unfinished 2-step sagas (debit applied, credit outstanding), SIGKILL, restart on the same store ($store_size on disk)."
  echo
  echo "| measure (from the restarted process's start) | ms |"
  echo "|---|---|"
  echo "| \`/readyz\` answers 200 | $ready_ms |"
  echo "| every recovered saga finished | $finished_ms |"
  echo
  echo "- readyz after SIGKILL with $SAGAS unfinished sagas: **${ready_ms} ms** (goal ≤ 1000 ms)"
  echo "- all $SAGAS finished in **${finished_ms} ms** (goal ≤ 5000 ms): $completed completed; $books"
} >"$work/report.md"
echo
cat "$work/report.md"
publish recovery "$work/report.md"
