#!/usr/bin/env bash
# A fleet's durable saga throughput, and its takeover time, on one machine: a private
# PostgreSQL, two gateways (backend = "postgres") and the two demo banks.
#
#   fleet    - two wrk processes at once, one per gateway: POST /transfers, a fresh X-Request-ID
#              per request; rates summed, the worse p99 reported
#   pgbench  - the physical anchor, in the same run: pgbench running the statements a saga makes
#              on the same database (claim INSERT, two UPDATEs, the last with its NOTIFY), each
#              committed on its own, and the three in one transaction
#   takeover - gw1 is killed (SIGKILL) with at least 100 sagas in flight; the time until gw2 has
#              finished every one of them
#
# Usage: bench/fleet.sh   (env: DURATION=10 CONNECTIONS=64 THREADS=1 ROUNDS=3 PGBENCH_CLIENTS=16
#                          LEASE_MS=2000 BASELINE=)
#        BASELINE=path/to/txgate also runs a fleet of two of that binary (an earlier build, same
#        config) on a database of its own in the same server, in the same interleaved rounds, for
#        the before/after ratio; bench/baseline.sh REV builds one.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
source examples/postgres.sh

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
PGBENCH_CLIENTS=${PGBENCH_CLIENTS:-16}
LEASE_MS=${LEASE_MS:-2000}
A_PORT=17401
B_PORT=17402
PG_PORT=17403
GW_PORTS=(17404 17406)
ADMIN_PORTS=(17405 17407)
BASE_PORTS=(17408 17410)
BASE_ADMIN_PORTS=(17409 17411)
BASELINE=${BASELINE:-}

need_tool wrk wrk
need_tool curl curl
refuse_busy "$A_PORT" "$B_PORT" "$PG_PORT" "${GW_PORTS[@]}" "${ADMIN_PORTS[@]}" \
  "${BASE_PORTS[@]}" "${BASE_ADMIN_PORTS[@]}"
build_release

work=$(mktemp -d)
chmod 755 "$work"
trap 'stop_all; pg_stop "$work/pg"; rm -rf "$work"' EXIT
pg_start "$work/pg" "$PG_PORT" shared_buffers=256MB
URL="postgres://txgate@127.0.0.1:$PG_PORT/postgres"

BIG=1000000000000000
for bank in "a $A_PORT alice" "b $B_PORT carol"; do
  set -- $bank
  target/release/txgate-bank --listen "127.0.0.1:$2" --name "bank_$1" --accounts "$3=$BIG" \
    --keys-max 400000 >"$work/bank_$1.log" 2>&1 &
  PIDS+=($!)
  wait_port "$2"
done

fleet_config() { # PORT ADMIN_PORT URL GATEWAY_ID
  cat <<CONFIG
[server]
listen = "127.0.0.1:$1"
admin_listen = "127.0.0.1:$2"
[store]
backend = "postgres"
url = "$3"
gateway_id = "$4"
lease_ms = $LEASE_MS
retention_secs = 3600
$(bank_upstreams "$A_PORT" "$B_PORT")
$(transfer_route transfers /transfers)
CONFIG
}

GW_PIDS=()
for i in 0 1; do
  fleet_config "${GW_PORTS[$i]}" "${ADMIN_PORTS[$i]}" "$URL" "gw$((i + 1))" >"$work/gw$((i + 1)).toml"
  start_txgate "$work/gw$((i + 1)).toml" "$work/gw$((i + 1)).log"
  GW_PIDS+=("$TXGATE_PID")
done
for port in "${GW_PORTS[@]}"; do wait_port "$port"; done
if [ -n "$BASELINE" ]; then
  # A database of its own: the baseline build may read another schema version.
  pg_sql "$PG_PORT" "CREATE DATABASE baseline" >/dev/null
  for i in 0 1; do
    fleet_config "${BASE_PORTS[$i]}" "${BASE_ADMIN_PORTS[$i]}" "${URL%/postgres}/baseline" \
      "base$((i + 1))" >"$work/base$((i + 1)).toml"
    TXGATE_LOG=warn "$BASELINE" serve --config "$work/base$((i + 1)).toml" >"$work/base$((i + 1)).log" 2>&1 &
    PIDS+=($!)
  done
  for port in "${BASE_PORTS[@]}"; do wait_port "$port"; done
fi

transfers_lua "$work/unique.lua"
wrk_unique() { # PORT PREFIX CONNECTIONS: prints "rate p99_ms"
  wrk -t"$THREADS" -c"$3" -d"${DURATION}s" --latency -s "$work/unique.lua" "http://127.0.0.1:$1" -- "$2" |
    wrk_rate_p99
}

# The statements of one 2-step saga (claim INSERT, two UPDATEs, the last with its NOTIFY); the
# record is about the size a gateway writes (bench/memory.sh: ~730 bytes). Two ways: each
# statement committed on its own (a gateway that neither batched nor merged), and the three in
# one transaction (as cheap as one saga gets without batching many).
saga_statements() { # BEGIN_1 COMMIT_1 BEGIN_2 COMMIT_2
  cat <<SQL
\set n random(1, 2000000000)
$1
INSERT INTO sagas (id, route, client, request_id, status, created_ms, updated_ms, owner, epoch, record)
  VALUES ('pgbench-' || :client_id || '-' || :n, 'transfers', '', 'pgbench-' || :client_id || '-' || :n,
          'pending', 0, 0, 'pgbench', 1, decode(repeat('ab', 730), 'hex'))
  ON CONFLICT (route, client, request_id) DO NOTHING;
UPDATE sagas SET status = 'pending', updated_ms = 1, record = decode(repeat('cd', 730), 'hex')
  WHERE id = 'pgbench-' || :client_id || '-' || :n AND owner = 'pgbench' AND epoch = 1;
$2
$3
UPDATE sagas SET status = 'completed', updated_ms = 2, expires_at_ms = 9000000000000,
    record = decode(repeat('ef', 730), 'hex')
  WHERE id = 'pgbench-' || :client_id || '-' || :n AND owner = 'pgbench' AND epoch = 1;
SELECT pg_notify('txgate_sagas', 'pgbench-' || :client_id || '-' || :n);
$4
SQL
}
saga_statements "" "" "BEGIN;" "COMMIT;" >"$work/commits.sql"
saga_statements "BEGIN;" "" "" "COMMIT;" >"$work/one.sql"
pgbench_rate() { # SCRIPT: prints transactions (sagas' worth) per second
  "$(pg_bin)/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U txgate -n -f "$1" \
    -c "$PGBENCH_CLIENTS" -j 2 -T "$DURATION" postgres 2>/dev/null |
    awk '/^tps = / { printf "%.0f", $3 }'
}

declare -A RATE P99
fleet_round() { # TARGET PORT_1 PORT_2 ROUND
  local half=$((CONNECTIONS / 2)) first r1 p1 r2 p2
  wrk_unique "$2" "r$4-$1-1-$RANDOM" "$half" >"$work/gw1.out" &
  first=$!
  wrk_unique "$3" "r$4-$1-2-$RANDOM" "$half" >"$work/gw2.out"
  wait "$first"
  read -r r1 p1 <"$work/gw1.out"
  read -r r2 p2 <"$work/gw2.out"
  RATE[$1]+="$((r1 + r2)) "
  P99[$1]+="$(awk -v x="$p1" -v y="$p2" 'BEGIN { print (x > y ? x : y) }') "
  echo "round $4 $1: $((r1 + r2)) sagas/s ($r1 + $r2), p99 $p1 / $p2 ms" >&2
}
for round in $(seq "$ROUNDS"); do
  fleet_round fleet "${GW_PORTS[0]}" "${GW_PORTS[1]}" "$round"
  if [ -n "$BASELINE" ]; then
    fleet_round baseline "${BASE_PORTS[0]}" "${BASE_PORTS[1]}" "$round"
  fi
  for script in commits one; do
    tps=$(pgbench_rate "$work/$script.sql")
    RATE[$script]+="$tps "
    echo "round $round pgbench ($script): $tps sagas' worth/s" >&2
  done
done

# Takeover: slow the banks so sagas pile up in gw1, kill it, time gw2 finishing them.
curl -sf -X POST "http://127.0.0.1:$A_PORT/_faults" -d '{"kind":"latency","latency_ms":200,"probability":1.0}' >/dev/null
unfinished() { pg_sql "$PG_PORT" "SELECT count(*) FROM sagas WHERE expires_at_ms IS NULL AND owner = 'gw1'"; }
DURATION=30 wrk_unique "${GW_PORTS[0]}" "takeover-$RANDOM" 200 >/dev/null 2>&1 &
load=$!
for _ in $(seq 500); do
  [ "$(unfinished)" -ge 150 ] && break
  sleep 0.02
done
{ kill -9 "${GW_PIDS[0]}" && wait "${GW_PIDS[0]}"; } 2>/dev/null || true
killed=$(date +%s%N)
in_flight=$(unfinished)
if [ "$in_flight" -lt 100 ]; then
  echo "error: only $in_flight sagas were in flight at the kill; the takeover needs 100" >&2
  exit 1
fi
kill "$load" 2>/dev/null || true
curl -sf -X DELETE "http://127.0.0.1:$A_PORT/_faults" >/dev/null
for _ in $(seq 3000); do
  [ "$(pg_sql "$PG_PORT" "SELECT count(*) FROM sagas WHERE expires_at_ms IS NULL")" = 0 ] && break
  sleep 0.01
done
took_ms=$((($(date +%s%N) - killed) / 1000000))
left=$(pg_sql "$PG_PORT" "SELECT count(*) FROM sagas WHERE expires_at_ms IS NULL")
taken=$(metric_sum "${ADMIN_PORTS[1]}" txgate_fleet_takeovers_total)

fleet_rate=$(median ${RATE[fleet]})
commits_rate=$(median ${RATE[commits]})
one_rate=$(median ${RATE[one]})
{
  echo "Machine and date: $(machine_line); PostgreSQL $("$(pg_bin)/postgres" --version | awk '{ print $3 }'), fsync and synchronous_commit on."
  echo
  echo '```'
  echo "DURATION=$DURATION CONNECTIONS=$CONNECTIONS THREADS=$THREADS ROUNDS=$ROUNDS PGBENCH_CLIENTS=$PGBENCH_CLIENTS LEASE_MS=$LEASE_MS bench/fleet.sh"
  echo '```'
  echo
  echo "Two gateways, one database, two banks, all on this machine. wrk -t$THREADS -c$((CONNECTIONS / 2)) -d${DURATION}s --latency on each gateway at once; pgbench -c $PGBENCH_CLIENTS -j 2 -T $DURATION; median of $ROUNDS interleaved rounds."
  echo
  echo "| target | rate | p99 ms |"
  echo "|---|---|---|"
  echo "| durable 2-step sagas through a fleet of two | $fleet_rate sagas/s | $(median ${P99[fleet]}) |"
  echo "| pgbench: a saga's statements, one commit each | $commits_rate sagas' worth/s | |"
  echo "| pgbench: a saga's statements in one transaction | $one_rate sagas' worth/s | |"
  echo
  echo "p99 of the fleet, round by round: ${P99[fleet]}ms (the sagas table grows through the run)."
  echo
  echo "- fleet: **$fleet_rate sagas/s**, p99 $(median ${P99[fleet]}) ms (anchor: DTM, published 935 sagas/s on MySQL with 4 cores; $(awk -v r="$fleet_rate" 'BEGIN { printf "%.1f", r / 935 }')× on half the cores, with the database on the same cores)"
  echo "- $(ratio_line "fleet / pgbench, one commit per statement" "$fleet_rate" "$commits_rate" | bold_ratio); $(ratio_line "fleet / pgbench, one transaction per saga" "$fleet_rate" "$one_rate" | bold_ratio) (the writes of many sagas share a transaction)"
  if [ -n "$BASELINE" ]; then
    echo "- $(ratio_line "fleet / the baseline build's fleet" "$fleet_rate" "$(median ${RATE[baseline]})" | bold_ratio) (baseline: ${BASELINE_NAME:-$BASELINE}, same run, same database server; its p99 $(median ${P99[baseline]}) ms)"
  fi
  echo "- takeover: gw1 killed with **$in_flight** sagas in flight; gw2 took over $taken and every saga of the fleet was finished **$took_ms ms** after the kill (lease_ms $LEASE_MS; goal ≤ lease_ms + 2000 ms; $left left unfinished)"
} >"$work/report.md"
echo
cat "$work/report.md"
publish fleet "$work/report.md"
