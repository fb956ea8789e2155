#!/usr/bin/env bash
# The txgate fleet demo: a private PostgreSQL, two gateways on it (examples/fleet.toml) and the
# two demo banks. A transfer on one gateway and its retry on the other; one rate limit for both;
# a twin of gateway 1 refused; then gateway 1 is killed with transfers in flight, and gateway 2
# takes them over and finishes them. It then keeps running; Ctrl-C stops everything. DEMO_EXIT=1 stops after the walkthrough.
# Needs root (PostgreSQL runs as its own user) and installs postgresql when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source examples/postgres.sh

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$1"; eval "$1"; echo; }

say "Building the gateway, the demo bank and the plugins (release) ..."
cargo build --release -q -p txgate -p txgate-bank
plugins/build >/dev/null

demo_dir=$PWD/target/fleet-demo
rm -rf "$demo_dir"
mkdir -p "$demo_dir"
chmod 755 "$demo_dir"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pg_stop "$demo_dir/pg"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

say "A private PostgreSQL on 127.0.0.1:7432 (initdb and pg_ctl as the postgres user):"
pg_start "$demo_dir/pg" 7432
export TXGATE_STORE_URL="postgres://txgate@127.0.0.1:7432/postgres"
echo "TXGATE_STORE_URL=$TXGATE_STORE_URL"

target/release/txgate-bank --listen 127.0.0.1:7001 --name bank_a \
  --accounts alice=1000,bob=1000 >"$demo_dir/bank_a.log" 2>&1 &
pids+=($!)
target/release/txgate-bank --listen 127.0.0.1:7002 --name bank_b \
  --accounts carol=1000,dave=1000 >"$demo_dir/bank_b.log" 2>&1 &
pids+=($!)

say "The schema, created before any gateway starts (txgate serve would do it too):"
run "target/release/txgate migrate --config examples/fleet.toml"

sed -e 's/127.0.0.1:8081/127.0.0.1:8082/' -e 's/127.0.0.1:9081/127.0.0.1:9082/' \
  -e 's|"\.\./target/|"'"$PWD"'/target/|' examples/fleet.toml >"$demo_dir/gw2.toml"
target/release/txgate serve --config examples/fleet.toml 2>"$demo_dir/gw1.log" &
gw1=$!
pids+=($gw1)
target/release/txgate serve --config "$demo_dir/gw2.toml" 2>"$demo_dir/gw2.log" &
pids+=($!)
for admin in 9081 9082; do
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break
    sleep 0.05
  done
  curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null || { cat "$demo_dir"/gw*.log; exit 1; }
done
echo "gateway 1 on :8081, gateway 2 on :8082"

transfer() { # PORT ID FROM TO AMOUNT
  curl -s -X POST "http://127.0.0.1:$1/transfers" -H "X-Request-ID: $2" \
    -H 'Content-Type: application/json' -d "{\"from\":\"$3\",\"to\":\"$4\",\"amount\":$5}"
}

say "A transfer through gateway 1:"
run "transfer 8081 fleet-demo-1 alice carol 100"

say "Its retry reaches gateway 2: the same answer, replayed from the fleet's store; nothing runs twice:"
run "curl -s -i -X POST http://127.0.0.1:8082/transfers -H 'X-Request-ID: fleet-demo-1' -H 'Content-Type: application/json' -d '{\"from\":\"alice\",\"to\":\"carol\",\"amount\":100}' | grep -iE '^(HTTP|idempotent-replayed)|saga_id'"

say "One rate limit for the fleet (burst 3): reads alternate between the gateways; the 4th is refused:"
for n in 1 2 3 4; do
  port=$((8081 + (n + 1) % 2))
  printf 'read %s via :%s: ' "$n" "$port"
  curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$port/bank-a/accounts" -H 'X-Client-ID: demo-reader'
done

say "A second gateway started with gateway 1's id is refused: twins would share one lease:"
run "target/release/txgate serve --config examples/fleet.toml 2>&1 | grep -o 'store.gateway_id .* is in use by a live gateway' || true"

say "What the fleet's database holds of each gateway: its heartbeat and the lease it declared"
say "(each is judged by its own lease, so a rolling change of lease_ms takes nothing over):"
run "pg_sql 7432 'SELECT id, lease_ms, instance FROM gateways ORDER BY id'"

say "bank_a slows down (1.5 s per call); five transfers go to gateway 1 ..."
curl -sf -X POST http://127.0.0.1:7001/_faults -d '{"kind":"latency","latency_ms":1500,"probability":1.0}' >/dev/null
for n in 1 2 3 4 5; do
  transfer 8081 "fleet-demo-slow-$n" bob dave 10 >/dev/null 2>&1 &
done
pending() { curl -s 'http://127.0.0.1:9082/admin/sagas?status=pending&limit=100' | grep -o '"saga_id"' | wc -l; }
for _ in $(seq 100); do
  [ "$(pending)" -ge 5 ] && break
  sleep 0.05
done
echo "gateway 2's admin API sees the whole fleet: $(pending) sagas pending, all run by gateway 1"

say "Gateway 1 is killed (SIGKILL) with them in flight:"
{ kill -9 "$gw1" && wait "$gw1"; } 2>/dev/null || true
killed=$(date +%s%N)
curl -sf -X DELETE http://127.0.0.1:7001/_faults >/dev/null
echo "gateway 1 is gone; after lease_ms (3000) without its heartbeat, gateway 2 takes its sagas over ..."
for _ in $(seq 200); do
  [ "$(pending)" = 0 ] && break
  sleep 0.05
done
echo "all finished by gateway 2, $((($(date +%s%N) - killed) / 1000000)) ms after the kill"
run "curl -s http://127.0.0.1:9082/metrics | grep -E '^txgate_fleet_takeovers_total'"

say "A client's retry of one of them, on gateway 2, gets its final answer:"
run "transfer 8082 fleet-demo-slow-3 bob dave 10"

say "The books: bob paid 5 x 10, dave got 5 x 10, exactly once:"
run "curl -s http://127.0.0.1:7001/accounts/bob"
run "curl -s http://127.0.0.1:7002/accounts/dave"

say "Logs are in $demo_dir/."
if [ "${DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
say "Gateway 2 is up on http://127.0.0.1:8082 (admin http://127.0.0.1:9082). Press Ctrl-C to stop."
wait
