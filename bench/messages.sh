#!/usr/bin/env bash
# Transactional message throughput: messages prepared and submitted through txgate (2 calls
# each, on one connection per wrk thread so that a message's submit follows its prepare), each
# delivered to two steps in order (a credit at bank A, a credit at bank B), durable when prepared,
# when submitted and when delivered; against 2-step transfer sagas through the same gateways, in
# the same rounds.
# Twice: one gateway on its embedded store, and a fleet of two gateways on one PostgreSQL.
#
#   messages/s  - messages delivered to both steps per second, from the first prepare until the
#                 last of the messages submitted in the round was delivered
#                 (txgate_messages_total{outcome="delivered"})
#   submit->delivered - p50/p99 from a message's submit (its timeline) to its last delivery,
#                 over the newest 1,000 messages (the fleet's gateways share one table)
#   sagas/s     - wrk POST /transfers, a fresh X-Request-ID per request, same connections
#
# Usage: bench/messages.sh   (env: DURATION=10 CONNECTIONS=16 ROUNDS=3 FLEET=1)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
source examples/postgres.sh

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-16}
ROUNDS=${ROUNDS:-3}
FLEET=${FLEET:-1}
if [ $((CONNECTIONS % 2)) -ne 0 ]; then
  echo "error: CONNECTIONS must be even (the fleet shares them between two gateways)" >&2
  exit 1
fi
A_PORT=17341
B_PORT=17342
TXGATE_PORT=17343
ADMIN_PORT=17344
PG_PORT=17345
FLEET_PORTS=(17346 17348)
FLEET_ADMIN_PORTS=(17347 17349)

need_tool wrk wrk
refuse_busy "$A_PORT" "$B_PORT" "$TXGATE_PORT" "$ADMIN_PORT" "$PG_PORT" "${FLEET_PORTS[@]}" \
  "${FLEET_ADMIN_PORTS[@]}"
build_release

work=$(mktemp -d)
chmod 755 "$work"
trap 'stop_all; [ "$FLEET" = 1 ] && pg_stop "$work/pg"; rm -rf "$work"' EXIT
start_transfer_banks "$A_PORT" "$B_PORT" "$work"

# gateway_config PORT ADMIN_PORT STORE_TOML: the transfer saga and the message route.
gateway_config() {
  cat <<CONFIG
[server]
listen = "127.0.0.1:$1"
admin_listen = "127.0.0.1:$2"
[store]
$3
retention_secs = 3600
$(bank_upstreams "$A_PORT" "$B_PORT")
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
}

gateway_config "$TXGATE_PORT" "$ADMIN_PORT" "dir = \"$work/store\"" >"$work/txgate.toml"
start_txgate "$work/txgate.toml" "$work/txgate.log"
wait_port "$TXGATE_PORT"
if [ "$FLEET" = 1 ]; then
  pg_start "$work/pg" "$PG_PORT" shared_buffers=256MB
  url="postgres://txgate@127.0.0.1:$PG_PORT/postgres"
  for i in 0 1; do
    gateway_config "${FLEET_PORTS[$i]}" "${FLEET_ADMIN_PORTS[$i]}" \
      "backend = \"postgres\"
url = \"$url\"
gateway_id = \"gw$((i + 1))\"" >"$work/gw$i.toml"
    start_txgate "$work/gw$i.toml" "$work/gw$i.log"
  done
  for port in "${FLEET_PORTS[@]}"; do wait_port "$port"; done
fi
transfers_lua "$work/sagas.lua"

# One Lua state per thread and one connection per thread: each message's submit is sent once
# its prepare was answered, on the same connection. The state moves on answers only, since wrk
# calls `request` once more than it sends (to check the script). The submits answered 2xx are
# the messages the round waits for; `done` prints their count and every other answer's.
cat >"$work/messages.lua" <<'LUA'
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function init(args)
  prefix = args[1] .. "-" .. tid
  counter = 1
  submit = false
  submitted = 0
  failed = 0
  body = '{"legs":{"ledger":{"account":"alice","amount":1},"notify":{"account":"carol","amount":1}}}'
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  local id = prefix .. "-" .. counter
  sent_submit = submit
  wrk.headers["X-Request-ID"] = id
  if submit then
    return wrk.format("POST", "/msg/" .. id .. "/submit", nil, "{}")
  end
  return wrk.format("POST", "/msg", nil, body)
end
function response(status, headers, body)
  if status >= 300 then
    failed = failed + 1
  end
  if sent_submit then
    if status < 300 then
      submitted = submitted + 1
    end
    submit = false
    counter = counter + 1
  elseif status < 300 then
    submit = true
  else
    counter = counter + 1
  end
end
function done(summary, latency, requests)
  local s, f = 0, 0
  for _, t in ipairs(threads) do
    s = s + t:get("submitted")
    f = f + t:get("failed")
  end
  io.write(string.format("submitted %d failed %d\n", s, f))
end
LUA

delivered() { # ADMIN_PORT...
  local total=0 port
  for port in "$@"; do
    total=$((total + $(metric_sum "$port" 'txgate_messages_total\{route="events",outcome="delivered"\}')))
  done
  echo "$total"
}

# messages PREFIX "PORT..." "ADMIN_PORT...": prints "messages/s p50_ms p99_ms", the connections
# shared among the gateways, each message's calls to one of them.
messages() {
  local ports=($2) admins=($3) started now count=0 target=0 before pids=() i per
  per=$((CONNECTIONS / ${#ports[@]}))
  before=$(delivered "${admins[@]}")
  started=$(date +%s.%N)
  for i in "${!ports[@]}"; do
    wrk -t"$per" -c"$per" -d"${DURATION}s" -s "$work/messages.lua" \
      "http://127.0.0.1:${ports[$i]}" -- "$1-$i" >"$work/wrk$i.out" &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { echo "error: wrk on ${ports[$i]} failed" >&2; exit 1; }
  done
  for i in "${!ports[@]}"; do
    read -r _ s _ f < <(grep '^submitted' "$work/wrk$i.out")
    target=$((target + s))
    [ "$f" -gt 0 ] && echo "warning: $f answers from 300 up on ${ports[$i]}" >&2
  done
  for _ in $(seq 3000); do
    count=$(($(delivered "${admins[@]}") - before))
    [ "$count" -ge "$target" ] && break
    sleep 0.02
  done
  now=$(date +%s.%N)
  [ "$count" -ge "$target" ] || echo "warning: only $count of $target messages delivered" >&2
  curl -s "http://127.0.0.1:${admins[0]}/admin/sagas?route=events&limit=1000" | python3 -c '
import json, sys
lat = sorted(r["updated_ms"] - next(a["at_ms"] for a in r["actions"] if a["action"] == "submit")
             for r in json.load(sys.stdin)["sagas"]
             if r.get("msg_state") == "delivered" and r["actions"])
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else 0
print(pick(0.5), pick(0.99))' >"$work/lat.out"
  read -r p50 p99 <"$work/lat.out"
  awk -v n="$count" -v s="$started" -v e="$now" -v p50="$p50" -v p99="$p99" \
    'BEGIN { printf "%.0f %s %s\n", n / (e - s), p50, p99 }'
}

# sagas PREFIX "PORT...": prints "sagas/s p99_ms" (rates summed, the worse p99).
sagas() {
  local ports=($2) per i pids=()
  per=$((CONNECTIONS / ${#ports[@]}))
  for i in "${!ports[@]}"; do
    wrk -t"$per" -c"$per" -d"${DURATION}s" --latency -s "$work/sagas.lua" \
      "http://127.0.0.1:${ports[$i]}" -- "$1-$i" | wrk_rate_p99 >"$work/sagas$i.out" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || { echo "error: wrk failed" >&2; exit 1; }; done
  cat "$work"/sagas[0-9].out | awk '{ n += $1; if ($2 > p) p = $2 } END { printf "%.0f %s\n", n, p }'
  rm -f "$work"/sagas[0-9].out
}

declare -A MSG SAGA P99
round_of() { # NAME ROUND "PORT..." "ADMIN_PORT..."
  local m p50 p99 s sp99
  read -r m p50 p99 < <(messages "r$2-$1-m-$RANDOM" "$3" "$4")
  read -r s sp99 < <(sagas "r$2-$1-s-$RANDOM" "$3")
  echo "round $2 $1: messages $m/s (submit->delivered p50 $p50 ms, p99 $p99 ms); sagas $s/s (p99 $sp99 ms)" >&2
  MSG[$1]+="$m " SAGA[$1]+="$s " P99[$1]+="$p99 "
}
for round in $(seq "$ROUNDS"); do
  round_of single "$round" "$TXGATE_PORT" "$ADMIN_PORT"
  if [ "$FLEET" = 1 ]; then
    round_of fleet "$round" "${FLEET_PORTS[*]}" "${FLEET_ADMIN_PORTS[*]}"
  fi
done
echo "machine: $(machine_line)"
for name in single fleet; do
  [ -n "${MSG[$name]:-}" ] || continue
  m=$(median ${MSG[$name]})
  s=$(median ${SAGA[$name]})
  echo "$name: messages $m/s delivered to 2 steps (submit->delivered p99 $(median ${P99[$name]}) ms); sagas $s/s; median of $ROUNDS rounds, $CONNECTIONS connections"
  ratio_line "$name messages/sagas" "$m" "$s"
done
