#!/usr/bin/env bash
# Plugins that load fast: the gateway's start-up to `/readyz` 200 with ten plugins, with a cold
# compile cache (an empty store directory) and a warm one (the same directory, restarted);
# reloads of ten changed modules, cold (a new module for each plugin) and warm (back to the
# modules of the start, which the cache keeps), timed under wrk load that must see no error; the memory of one live plugin instance; and the same masking
# as the mask plugin done by a separate process (bench/mask-process), as an external plugin
# server would. Medians of ROUNDS interleaved rounds.
#
# The ten plugins: the shipped rate_limit, idempotency, add_header, compensation and mask, and
# tests/programs/noop five times under other names. Every module is a variant with bytes of its
# own (bench/startup.py variant), so a cold start compiles ten modules, not six.
#
# Usage: bench/startup.sh      (env: ROUNDS=5 INSTANCES=200 DURATION=90 CONNECTIONS=64; the
#                               reloads must end within DURATION seconds of wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

ROUNDS=${ROUNDS:-5}
INSTANCES=${INSTANCES:-200}
DURATION=${DURATION:-90}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=2
BANK_PORT=17601
TXGATE_PORT=17602
ADMIN_PORT=17603
MASK_CONFIG='{"rules": [{"path": "$..card", "mask": "keep_last"}, {"path": "$.email", "mask": "email"}, {"path": "$.phone", "mask": "phone"}], "luhn_scan": true}'
SLEEPERS=4

need_tool wrk wrk
refuse_busy "$BANK_PORT" "$TXGATE_PORT" "$ADMIN_PORT"
ulimit -n $((INSTANCES * 4 + 1024))
build_release
plugins/build >/dev/null
cargo build -q --release --target wasm32-wasip2 --target-dir target/wasm \
  -p txgate-test-noop -p txgate-test-sleeper
cargo build -q --release -p txgate-bench-mask-process
programs=target/wasm/wasm32-wasip2/release
work=$(mktemp -d)
trap 'stop_all; rm -rf "$work"' EXIT
start_bank "$BANK_PORT" "$work/bank.log"

BASES=(target/plugins/rate_limit.wasm target/plugins/idempotency.wasm
  target/plugins/add_header.wasm target/plugins/compensation.wasm target/plugins/mask.wasm
  "$programs/txgate_test_noop.wasm" "$programs/txgate_test_noop.wasm"
  "$programs/txgate_test_noop.wasm" "$programs/txgate_test_noop.wasm"
  "$programs/txgate_test_noop.wasm")
SETTINGS=(
  $'state = "volatile"\n[plugins.p0.config]\nkey = "route"\nper_second = 1000000\nburst = 1000000'
  ''
  $'[plugins.p2.config]\nname = "x-served-by"\nvalue = "bench"'
  ''
  "[plugins.p4.config]
rules = [{ path = \"\$..card\", mask = \"keep_last\" }, { path = \"\$.email\", mask = \"email\" }, { path = \"\$.phone\", mask = \"phone\" }]
luhn_scan = true"
  '' '' '' '' '')

# generation TAG: ten modules of their own under $work/TAG/.
generation() {
  mkdir -p "$work/$1"
  for i in "${!BASES[@]}"; do
    python3 bench/startup.py variant "${BASES[$i]}" "$work/$1/p$i.wasm" "$1-$i"
  done
}

server() {
  cat <<TOML
[server]
listen = "127.0.0.1:$TXGATE_PORT"
admin_listen = "127.0.0.1:$ADMIN_PORT"
max_connections_per_client = $((INSTANCES * 2))
[store]
dir = "$1"
[upstreams.bank]
url = "http://127.0.0.1:$BANK_PORT"
timeout_ms = 10000
TOML
}

# ten_plugins STORE_DIR TAG: ten plugins of generation TAG on the route /api/.
ten_plugins() {
  server "$1"
  local names=()
  for i in "${!BASES[@]}"; do
    printf '[plugins.p%d]\nmodule = "%s"\n%s\n' "$i" "$work/$2/p$i.wasm" "${SETTINGS[$i]}"
    names+=("\"p$i\"")
  done
  local IFS=,
  printf '[[routes]]\nname = "api"\npath_prefix = "/api/"\nstrip_prefix = true\nupstream = "bank"\nplugins = [%s]\n' "${names[*]}"
}

# no_plugins STORE_DIR: the same gateway without plugins.
no_plugins() {
  server "$1"
  printf '[[routes]]\nname = "api"\npath_prefix = "/api/"\nstrip_prefix = true\nupstream = "bank"\n'
}

ready_ms() {
  python3 bench/startup.py ready target/release/txgate "$1" "$ADMIN_PORT" "$2"
}

# -- Start-up: cold and warm cache, and no plugins, interleaved --------------------------------
generation start
cold=() warm=() bare=()
for round in $(seq "$ROUNDS"); do
  rm -rf "$work/store"
  ten_plugins "$work/store" start >"$work/ten.toml"
  cold+=("$(ready_ms "$work/ten.toml" "$work/cold.log")")
  warm+=("$(ready_ms "$work/ten.toml" "$work/warm.log")")
  no_plugins "$work/bare-store" >"$work/bare.toml"
  bare+=("$(ready_ms "$work/bare.toml" "$work/bare.log")")
  echo "start-up round $round: cold ${cold[-1]} ms, warm ${warm[-1]} ms, no plugins ${bare[-1]} ms" >&2
done
compiled=$(grep -c 'plugin compiled' "$work/cold.log" || true)
cached=$(grep -c 'plugin loaded from the compile cache' "$work/warm.log" || true)
mask_compile_ms=$(grep 'plugin compiled' "$work/cold.log" | grep 'plugin="*p4' | sed -n 's/.*compile_ms=\([0-9]*\).*/\1/p')
mask_load_us=$(grep 'plugin loaded from the compile cache' "$work/warm.log" | grep 'plugin="*p4' | sed -n 's/.*load_us=\([0-9]*\).*/\1/p')

# -- Reloads under load: ten changed modules, cold then warm -----------------------------------
ten_plugins "$work/store" start >"$work/ten.toml"
start_txgate "$work/ten.toml" "$work/reload.log"
until curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null; do sleep 0.01; done
reload_s() {
  ten_plugins "$work/store" "$1" >"$work/ten.toml"
  curl -s -o "$work/reload.json" -w '%{http_code} %{time_total}\n' -X POST "http://127.0.0.1:$ADMIN_PORT/admin/reload"
}
idle_ten=$(python3 bench/startup.py rss "$TXGATE_PID")
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:$TXGATE_PORT/api/accounts/alice" >"$work/wrk.txt" &
wrk_pid=$!
sleep 1
reload_cold=() reload_warm=()
for round in $(seq "$ROUNDS"); do
  generation "c$round"
  read -r status seconds < <(reload_s "c$round")
  [ "$status" = 200 ] || { cat "$work/reload.json"; exit 1; }
  reload_cold+=("$(awk -v s="$seconds" 'BEGIN { printf "%.1f", s * 1000 }')")
  read -r status seconds < <(reload_s start)
  [ "$status" = 200 ] || { cat "$work/reload.json"; exit 1; }
  reload_warm+=("$(awk -v s="$seconds" 'BEGIN { printf "%.1f", s * 1000 }')")
  echo "reload round $round: cold ${reload_cold[-1]} ms, warm ${reload_warm[-1]} ms" >&2
done
if ! kill -0 "$wrk_pid" 2>/dev/null; then
  echo "wrk ended before the last reload: raise DURATION" >&2
  exit 1
fi
wait "$wrk_pid"
requests=$(awk '/requests in/ { print $1 }' "$work/wrk.txt")
non_2xx=$(awk '/Non-2xx/ { print $NF }' "$work/wrk.txt")
socket_errors=$(awk -F'[ ,]+' '/Socket errors/ { print $5 + $7 + $9 + $11 }' "$work/wrk.txt")
kill "$TXGATE_PID"
wait "$TXGATE_PID" 2>/dev/null || true

# -- Memory of a live instance -----------------------------------------------------------------
# Each phase is a gateway of its own, warm, with SLEEPERS routes through the sleeper program
# (each its own plugin, so the bound on instances in use per plugin is not reached) and a route
# without plugins. N concurrent requests that wait 3 s inside the plugin keep N instances live;
# N that wait 3 s at the bank (`/echo?delay_ms=`) keep the same connections open with no
# instance. The phase's RSS rise at 40 and at INSTANCES waiting clients gives a slope per
# client; the plugin slope less the bank slope is the memory of one live instance.
sleepers() {
  server "$work/sleep-store"
  for i in $(seq 0 $((SLEEPERS - 1))); do
    printf '[plugins.s%d]\nmodule = "%s"\ntimeout_ms = 1000\nwall_timeout_ms = 10000\n' "$i" "$PWD/$programs/txgate_test_sleeper.wasm"
    printf '[[routes]]\nname = "s%d"\npath_prefix = "/s%d/"\nstrip_prefix = true\nupstream = "bank"\nplugins = ["s%d"]\n' "$i" "$i" "$i"
  done
  printf '[[routes]]\nname = "plain"\npath_prefix = "/plain/"\nstrip_prefix = true\nupstream = "bank"\n'
}
sleepers >"$work/sleep.toml"
# phase WHERE CLIENTS: the RSS rise (MiB) while CLIENTS requests wait (WHERE: plugin or bank).
phase() {
  local where=$1 clients=$2 pid before peak sample
  start_txgate "$work/sleep.toml" "$work/sleep.log"
  pid=$TXGATE_PID
  until curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null; do sleep 0.01; done
  for i in $(seq 0 $((SLEEPERS - 1))); do curl -sf "http://127.0.0.1:$TXGATE_PORT/s$i/echo" >/dev/null; done
  curl -sf "http://127.0.0.1:$TXGATE_PORT/plain/echo" >/dev/null
  sleep 1
  before=$(python3 bench/startup.py rss "$pid")
  local clients_pids=()
  for i in $(seq 0 $((SLEEPERS - 1))); do
    if [ "$where" = plugin ]; then
      python3 bench/burst.py "$TXGATE_PORT" "/s$i/echo" $((clients / SLEEPERS)) "x-sleep-ms: 3000" >"$work/phase-$i.json" &
    else
      python3 bench/burst.py "$TXGATE_PORT" "/plain/echo?delay_ms=3000" $((clients / SLEEPERS)) >"$work/phase-$i.json" &
    fi
    clients_pids+=($!)
  done
  peak=$before
  while kill -0 "${clients_pids[0]}" 2>/dev/null; do
    sample=$(python3 bench/startup.py rss "$pid")
    peak=$(awk -v a="$peak" -v b="$sample" 'BEGIN { print (b > a ? b : a) }')
    sleep 0.1
  done
  wait "${clients_pids[@]}"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  for i in $(seq 0 $((SLEEPERS - 1))); do
    grep -q "\"ok\": $((clients / SLEEPERS))," "$work/phase-$i.json" || { cat "$work/phase-$i.json" >&2; exit 1; }
  done
  awk -v a="$peak" -v b="$before" 'BEGIN { printf "%.2f", a - b }'
}
per_instance=()
for round in $(seq "$ROUNDS"); do
  p_low=$(phase plugin 40)
  p_high=$(phase plugin "$INSTANCES")
  b_low=$(phase bank 40)
  b_high=$(phase bank "$INSTANCES")
  per_instance+=("$(awk -v ph="$p_high" -v pl="$p_low" -v bh="$b_high" -v bl="$b_low" -v n=$((INSTANCES - 40)) \
    'BEGIN { printf "%.0f", ((ph - pl) - (bh - bl)) / n * 1024 }')")
  echo "instance round $round: plugin +$p_low/+$p_high MiB, bank +$b_low/+$b_high MiB at 40/$INSTANCES clients: ${per_instance[-1]} KiB per instance" >&2
done

# -- The same masking as a process of its own --------------------------------------------------
mask_startup=() mask_rss=() mask_call=()
for round in $(seq "$ROUNDS"); do
  measured=$(python3 bench/startup.py mask target/release/txgate-bench-mask-process "$MASK_CONFIG" 1000)
  mask_startup+=("$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["startup_ms"])' "$measured")")
  mask_rss+=("$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["rss_mib"])' "$measured")")
  mask_call+=("$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["per_call_us"])' "$measured")")
done

# -- Report --------------------------------------------------------------------------------------
med() { median "$@"; }
{
  echo "Machine and date: $(machine_line)."
  echo
  echo '```'
  echo "ROUNDS=$ROUNDS INSTANCES=$INSTANCES DURATION=$DURATION CONNECTIONS=$CONNECTIONS bench/startup.sh"
  echo '```'
  echo
  echo "Median of $ROUNDS rounds (all rounds: in brackets)."
  echo
  echo "| what | median | rounds |"
  echo "|---|---|---|"
  echo "| start-up to /readyz 200, ten plugins, cold cache ($compiled compiled) | $(med "${cold[@]}") ms | ${cold[*]} |"
  echo "| start-up to /readyz 200, ten plugins, warm cache ($cached loaded from it) | **$(med "${warm[@]}") ms** | ${warm[*]} |"
  echo "| start-up to /readyz 200, no plugins | $(med "${bare[@]}") ms | ${bare[*]} |"
  echo "| reload of ten changed modules, cold, under load | $(med "${reload_cold[@]}") ms | ${reload_cold[*]} |"
  echo "| reload of ten changed modules, warm, under load | $(med "${reload_warm[@]}") ms | ${reload_warm[*]} |"
  echo "| memory of one live plugin instance (sleeper) | $(med "${per_instance[@]}") KiB | ${per_instance[*]} |"
  echo "| the mask plugin: compiled (cold start) / loaded from its artifact (warm) | ${mask_compile_ms:-?} ms / ${mask_load_us:-?} µs | last round |"
  echo "| the same masking as a process: spawn to first answer | $(med "${mask_startup[@]}") ms | ${mask_startup[*]} |"
  echo "| the same masking as a process: RSS after 1,000 calls | $(med "${mask_rss[@]}") MiB | ${mask_rss[*]} |"
  echo "| the same masking as a process: one call over its pipe | $(med "${mask_call[@]}") µs | ${mask_call[*]} |"
  echo "| the gateway with the ten plugins, idle | $idle_ten MiB | |"
  echo
  echo "Under load: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s through the ten plugins while the $((ROUNDS * 2)) reloads ran: $requests requests, non-2xx ${non_2xx:-0}, socket errors ${socket_errors:-0}."
  awk -v w="$(med "${warm[@]}")" 'BEGIN { printf "\n- warm start-up with ten plugins: %s ms (goal < 100 ms: %s)\n", w, (w < 100 ? "met" : "not met") }'
  awk -v wasm="${mask_load_us:-0}" -v proc="$(med "${mask_startup[@]}")" 'BEGIN {
    printf "- the mask plugin loaded from its artifact / the masking process started: **%.2f×** the time\n", wasm / 1000 / proc }'
  awk -v inst="$(med "${per_instance[@]}")" -v proc="$(med "${mask_rss[@]}")" 'BEGIN {
    printf "- one live plugin instance / the masking process: **%.3f×** the memory\n", inst / 1024 / proc }'
} | tee "$work/report.md"
if [ -n "${non_2xx:-}" ] && [ "$non_2xx" != 0 ] || [ "${socket_errors:-0}" != 0 ]; then
  echo "requests failed during the reloads" >&2
  exit 1
fi
publish startup "$work/report.md"
