#!/usr/bin/env bash
# Transactional message throughput: messages prepared and submitted through txgate (2 calls
# each, on one connection per wrk thread so that a message's submit follows its prepare), each
# delivered to two steps (a credit at bank A, a credit at bank B) with every state change
# fsynced; against 2-step transfer sagas through the same gateway, in the same run.
#
#   messages/s  - messages delivered to both steps per second, from the first prepare until the
#                 last delivery (txgate_messages_total{outcome="delivered"})
#   submit->delivered - p50/p99 from a message's submit (its timeline) to its last delivery,
#                 over the newest 1,000 messages
#   sagas/s     - wrk POST /transfers, a fresh X-Request-ID per request, same connections
#
# Usage: bench/messages.sh   (env: DURATION=10 CONNECTIONS=16 ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-16}
ROUNDS=${ROUNDS:-3}
A_PORT=17341
B_PORT=17342
TXGATE_PORT=17343
ADMIN_PORT=17344

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
retention_secs = 3600
[upstreams.bank_a]
url = "http://127.0.0.1:$A_PORT"
[upstreams.bank_b]
url = "http://127.0.0.1:$B_PORT"
$(transfer_route transfers /transfers)
[[routes]]
name = "events"
path_prefix = "/msg"
[routes.msg]
check = "POST /orders/check"
check_upstream = "bank_a"
prepare_timeout_ms = 60000
[[routes.msg.steps]]
name = "ledger"
upstream = "bank_a"
action = "POST /credit"
[[routes.msg.steps]]
name = "notify"
upstream = "bank_b"
action = "POST /credit"
CONFIG
start_txgate "$work/txgate.toml" "$work/txgate.log"
wait_port "$TXGATE_PORT"
transfers_lua "$work/sagas.lua"

# One Lua state per thread and one connection per thread: each message's submit is sent once
# its prepare was answered, on the same connection.
cat >"$work/messages.lua" <<'LUA'
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  prefix = args[1] .. "-" .. tid
  counter = 0
  submit = false
  body = '{"legs":{"ledger":{"account":"alice","amount":1},"notify":{"account":"carol","amount":1}}}'
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  if submit then
    submit = false
    return wrk.format("POST", "/msg/" .. id .. "/submit", nil, "{}")
  end
  counter = counter + 1
  id = prefix .. "-" .. counter
  submit = true
  wrk.headers["X-Request-ID"] = id
  return wrk.format("POST", "/msg", nil, body)
end
LUA

delivered() {
  metric_sum "$ADMIN_PORT" 'txgate_messages_total\{route="events",outcome="delivered"\}'
}

# messages PREFIX: prints "messages/s p50_ms p99_ms" (delivered per second, submit->delivered).
messages() {
  local before started now count target
  before=$(delivered)
  started=$(date +%s.%N)
  wrk -t"$CONNECTIONS" -c"$CONNECTIONS" -d"${DURATION}s" -s "$work/messages.lua" \
    "http://127.0.0.1:$TXGATE_PORT" -- "$1" >"$work/wrk.out"
  target=$(awk '/requests in/ { print int($1 / 2) }' "$work/wrk.out")
  for _ in $(seq 600); do
    count=$(( $(delivered) - before ))
    [ "$count" -ge "$target" ] && break
    sleep 0.1
  done
  now=$(date +%s.%N)
  curl -s "http://127.0.0.1:$ADMIN_PORT/admin/sagas?route=events&limit=1000" | python3 -c '
import json, sys
rows = json.load(sys.stdin)["sagas"]
lat = sorted(r["updated_ms"] - next(a["at_ms"] for a in r["actions"] if a["action"] == "submit")
             for r in rows if r.get("msg_state") == "delivered" and r["actions"])
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else 0
print(pick(0.5), pick(0.99))' >"$work/lat.out"
  read -r p50 p99 <"$work/lat.out"
  awk -v n="$count" -v s="$started" -v e="$now" -v p50="$p50" -v p99="$p99" \
    'BEGIN { printf "%.0f %s %s\n", n / (e - s), p50, p99 }'
}

sagas() {
  wrk -t"$CONNECTIONS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/sagas.lua" \
    "http://127.0.0.1:$TXGATE_PORT" -- "$1" | wrk_rate_p99
}

MSG="" SAGA=""
for round in $(seq "$ROUNDS"); do
  read -r m p50 p99 < <(messages "r$round-m-$RANDOM")
  read -r s sp99 < <(sagas "r$round-s-$RANDOM")
  echo "round $round: messages $m/s (submit->delivered p50 $p50 ms, p99 $p99 ms); sagas $s/s (p99 $sp99 ms)" >&2
  MSG+="$m " SAGA+="$s "
done
m=$(median $MSG)
s=$(median $SAGA)
echo "machine: $(machine_line)"
echo "messages: $m/s delivered to 2 steps (median of $ROUNDS rounds, $CONNECTIONS connections)"
echo "sagas:    $s/s 2-step transfers (same run, same connections)"
ratio_line "messages/sagas" "$m" "$s"
