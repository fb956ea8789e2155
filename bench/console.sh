#!/usr/bin/env bash
# The console with a big store: SAGAS finished sagas are made through the gateway (as
# bench/memory.sh does), then each console page is timed with curl, signed in: the list (counts
# per status, the last hour, the newest 100), a filtered list, a search by X-Request-ID, and a
# saga's page. Then saga traffic runs twice with wrk, alone and while an operator keeps
# reloading the list, and the p99 of the two runs is compared.
#
# Usage: bench/console.sh        (env: SAGAS=1000000 CONNECTIONS=64 DURATION=20 TIMES=21)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

SAGAS=${SAGAS:-1000000}
CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-20}
TIMES=${TIMES:-21}
THREADS=2
A_PORT=17411
B_PORT=17412
TXGATE_PORT=17413
ADMIN_PORT=17414
TOKEN=bench-operator-0123456789
ADMIN="http://127.0.0.1:$ADMIN_PORT"

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
[[server.admin_tokens]]
name = "bench"
token = "$TOKEN"
role = "operate"
[store]
dir = "$work/store"
$(bank_upstreams "$A_PORT" "$B_PORT")
$(transfer_route transfers /transfers)
CONFIG
start_txgate "$work/txgate.toml" "$work/txgate.log"
wait_port "$TXGATE_PORT"
finished() { curl -s -H "Authorization: Bearer $TOKEN" "$ADMIN/metrics" | awk '/^txgate_sagas_total/ { n += $NF } END { printf "%d", n }'; }

transfers_lua "$work/unique.lua"
chunk=0
while [ "$(finished)" -lt "$SAGAS" ]; do
  chunk=$((chunk + 1))
  wrk -t"$THREADS" -c"$CONNECTIONS" -d10s -s "$work/unique.lua" "http://127.0.0.1:$TXGATE_PORT" -- "c$chunk" >/dev/null
done
count=$(finished)
echo "$count finished sagas in the store" >&2

curl -s -o /dev/null -c "$work/cookies" -X POST "$ADMIN/ui/login" -H "Origin: $ADMIN" --data-urlencode "token=$TOKEN"
saga=$(curl -s -H "Authorization: Bearer $TOKEN" "$ADMIN/admin/sagas?limit=1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["sagas"][0]["saga_id"])')
# A request id from the first chunk: the oldest sagas, deepest in the indexes.
request_id="c1-1-1"

# time_page PATH: the median and the highest of TIMES loads, in ms; each must answer 200.
time_page() {
  local samples=() t code
  for _ in $(seq "$TIMES"); do
    read -r code t < <(curl -s -o /dev/null -b "$work/cookies" -w '%{http_code} %{time_total}\n' "$ADMIN$1")
    [ "$code" = 200 ] || { echo "$1 answered $code" >&2; exit 1; }
    samples+=("$(awk -v t="$t" 'BEGIN { printf "%.1f", t * 1000 }')")
  done
  printf '%s %s\n' "$(median "${samples[@]}")" "$(printf '%s\n' "${samples[@]}" | sort -g | tail -1)"
}

declare -A pages=(
  [list]="/ui/"
  [completed]="/ui/?status=completed"
  [search]="/ui/?q=$request_id"
  [saga]="/ui/sagas/$saga"
)
declare -A timing
for name in list completed search saga; do
  timing[$name]=$(time_page "${pages[$name]}")
done

sagas_p99() {
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/unique.lua" \
    "http://127.0.0.1:$TXGATE_PORT" -- "$1" | wrk_rate_p99 | awk '{ print $2 }'
}
alone=$(sagas_p99 alone)
# The operator: one connection reloading the list as fast as it answers (wrk, so the reader's
# own cost on the machine is small next to the gateway's).
session=$(awk '$6 == "txgate_session" { print $7 }' "$work/cookies")
wrk -t1 -c1 -d"$((DURATION + 2))s" -H "Cookie: txgate_session=$session" "$ADMIN/ui/" >"$work/reader.txt" &
reader=$!
with_console=$(sagas_p99 watched)
wait "$reader"
listings=$(awk '/^Requests\/sec:/ { print $2 }' "$work/reader.txt")

{
  echo "Machine and date: $(machine_line)."
  echo
  echo '```'
  echo "SAGAS=$SAGAS bench/console.sh"
  echo '```'
  echo
  echo "A release gateway holding $count finished sagas (SQLite store), each page loaded $TIMES times with curl, signed in; then wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s posting transfer sagas, alone and while one operator reloads the list page without pause ($listings lists a second, on one connection)."
  echo
  echo "| page | median ms | highest ms |"
  echo "|---|---|---|"
  for name in list completed search saga; do
    read -r med high <<<"${timing[$name]}"
    echo "| \`${pages[$name]}\` | $med | $high |"
  done
  echo
  awk -v a="$alone" -v b="$with_console" 'BEGIN {
    printf "- saga p99 alone %.2f ms, with the console listing %.2f ms: **%.2f×** (goal < 1.2×)\n", a, b, b / a
  }'
} >"$work/report.md"
echo
cat "$work/report.md"
publish console "$work/report.md"
