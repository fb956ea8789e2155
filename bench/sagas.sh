#!/usr/bin/env bash
# Durable saga throughput: 2-step transfer sagas (debit at bank A, credit at bank B) through
# txgate, every state change fsynced to the store before the call it leads to, against the same
# banks taking the same calls directly, in the same run with interleaved rounds.
#
#   saga    - wrk POST /transfers through txgate, a fresh X-Request-ID per request
#   direct  - two wrk processes at once: POST /debit on bank A and POST /credit on bank B, each
#             call with a fresh Idempotency-Key; reported as calls/s and as transfers/s (calls/2)
#
# Usage: bench/sagas.sh            (env: DURATION=10 CONNECTIONS=64 THREADS=2 ROUNDS=3 WARMUP=3 PLUGINS=0)
#        PLUGINS=1 also runs the route with the three shipped plugins (idempotency, rate limit,
#        compensation), for the plugin-overhead figure.
#        BASELINE=path/to/txgate also runs that binary (an earlier build, same config, its own
#        store) in the same interleaved rounds, for the before/after ratio (with PLUGINS=1, on both
#        routes); bench/baseline.sh REV builds one.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-3}
PLUGINS=${PLUGINS:-0}
A_PORT=17301
B_PORT=17302
TXGATE_PORT=17303
ADMIN_PORT=17304
BASE_PORT=17305
BASE_ADMIN_PORT=17306
BASELINE=${BASELINE:-}

need_tool wrk wrk
refuse_busy "$A_PORT" "$B_PORT" "$TXGATE_PORT" "$ADMIN_PORT" "$BASE_PORT" "$BASE_ADMIN_PORT"
build_release
[ "$PLUGINS" = 1 ] && plugins/build >/dev/null

work=$(mktemp -d)
trap 'stop_all; rm -rf "$work"' EXIT
start_transfer_banks "$A_PORT" "$B_PORT" "$work"

plugin_config=""
if [ "$PLUGINS" = 1 ]; then
  plugin_config=$(cat <<PLUGINS_TOML
[plugins.rate_limit]
module = "$PWD/target/plugins/rate_limit.wasm"
state = "volatile"
[plugins.rate_limit.config]
key = "route"
per_second = 1000000
burst = 1000000
[plugins.idempotency]
module = "$PWD/target/plugins/idempotency.wasm"
[plugins.compensation]
module = "$PWD/target/plugins/compensation.wasm"
[plugins.compensation.config.classify]
"409" = "success"
[plugins.compensation.config.steps.debit.compensate_body]
account = "\$request.from"
amount = "\$request.amount"
$(transfer_route plugged /plugged '["rate_limit", "idempotency", "compensation"]')
PLUGINS_TOML
)
fi

cat >"$work/txgate.toml" <<CONFIG
[server]
listen = "127.0.0.1:$TXGATE_PORT"
admin_listen = "127.0.0.1:$ADMIN_PORT"
[store]
dir = "$work/store"
retention_secs = 3600
$(bank_upstreams "$A_PORT" "$B_PORT")
$(transfer_route transfers /transfers)
$plugin_config
CONFIG
start_txgate "$work/txgate.toml" "$work/txgate.log"
wait_port "$TXGATE_PORT"
if [ -n "$BASELINE" ]; then
  sed -e "s/127.0.0.1:$TXGATE_PORT/127.0.0.1:$BASE_PORT/" -e "s/127.0.0.1:$ADMIN_PORT/127.0.0.1:$BASE_ADMIN_PORT/" \
    -e "s|$work/store|$work/baseline-store|" "$work/txgate.toml" >"$work/baseline.toml"
  TXGATE_LOG=warn "$BASELINE" serve --config "$work/baseline.toml" >"$work/baseline.log" 2>&1 &
  PIDS+=($!)
  wait_port "$BASE_PORT"
fi

transfers_lua "$work/unique.lua"

run_unique() { # SECONDS URL HEADER PATH PREFIX [connections]
  local seconds=$1 connections=${6:-$CONNECTIONS}
  shift
  wrk -t"$THREADS" -c"$connections" -d"${seconds}s" --latency -s "$work/unique.lua" "$1" -- "$4" "$2" "$3" |
    wrk_rate_p99
}

measure() { # SECONDS TARGET PREFIX: prints "rate p99"
  local seconds=$1 prefix=$3
  case $2 in
    saga) run_unique "$seconds" "http://127.0.0.1:$TXGATE_PORT" X-Request-ID /transfers "$prefix" ;;
    plugged) run_unique "$seconds" "http://127.0.0.1:$TXGATE_PORT" X-Request-ID /plugged "$prefix" ;;
    baseline) run_unique "$seconds" "http://127.0.0.1:$BASE_PORT" X-Request-ID /transfers "$prefix" ;;
    baseline-plugged) run_unique "$seconds" "http://127.0.0.1:$BASE_PORT" X-Request-ID /plugged "$prefix" ;;
    direct)
      local half=$((CONNECTIONS / 2)) a_rate a_p99 b_rate b_p99
      run_unique "$seconds" "http://127.0.0.1:$A_PORT" Idempotency-Key /debit "$prefix-a" "$half" >"$work/a.out" &
      local a_wrk=$!
      run_unique "$seconds" "http://127.0.0.1:$B_PORT" Idempotency-Key /credit "$prefix-b" "$half" >"$work/b.out"
      wait "$a_wrk"
      read -r a_rate a_p99 <"$work/a.out"
      read -r b_rate b_p99 <"$work/b.out"
      echo "$((a_rate + b_rate)) $(awk -v x="$a_p99" -v y="$b_p99" 'BEGIN { print (x > y ? x : y) }')"
      ;;
  esac
}

targets=(saga direct)
[ "$PLUGINS" = 1 ] && targets+=(plugged)
[ -n "$BASELINE" ] && targets+=(baseline)
[ -n "$BASELINE" ] && [ "$PLUGINS" = 1 ] && targets+=(baseline-plugged)
# Every process starts cold, its heap growing through the first seconds of load, and those
# seconds have a p99 several times the later ones, on the direct bank calls as well as on the
# sagas. A short warm-up of each target comes first, reported and not counted; the first round
# can still be slower (bench/RESULTS.md says what is known of it).
WARM=""
for target in "${targets[@]}"; do
  read -r rate p99 < <(measure "$WARMUP" "$target" "warm-$target-$RANDOM")
  WARM+="$target $rate/s p99 $p99 ms; "
  echo "warm-up $target: $rate/s, p99 $p99 ms" >&2
done
declare -A RATE P99
for round in $(seq "$ROUNDS"); do
  for target in "${targets[@]}"; do
    read -r rate p99 < <(measure "$DURATION" "$target" "r$round-$target-$RANDOM")
    RATE[$target]+="$rate "
    P99[$target]+="$p99 "
    echo "round $round $target: $rate/s, p99 $p99 ms" >&2
  done
done

# Group commits per saga, one saga at a time (the store's writer idle between them). With the
# plugins, the idempotency plugin's stored answer should ride on the saga's last commit.
commits_per_saga() { # PATH
  local before after i
  before=$(metric_sum "$ADMIN_PORT" txgate_store_commit_duration_seconds_count)
  for i in $(seq 20); do
    curl -sf -o /dev/null -X POST -H "x-request-id: one-by-one-$i-$RANDOM$RANDOM" \
      -H 'content-type: application/json' -d '{"from":"alice","to":"carol","amount":1}' \
      "http://127.0.0.1:$TXGATE_PORT$1"
  done
  after=$(metric_sum "$ADMIN_PORT" txgate_store_commit_duration_seconds_count)
  awk -v n=$((after - before)) 'BEGIN { printf "%.2f", n / 20 }'
}
if [ "$PLUGINS" = 1 ]; then
  bare_commits=$(commits_per_saga /transfers)
  plugged_commits=$(commits_per_saga /plugged)
fi

saga_rate=$(median ${RATE[saga]})
direct_calls=$(median ${RATE[direct]})
block=sagas
[ "$PLUGINS" = 1 ] && block=sagas-plugins
{
  echo "Machine and date: $(machine_line)."
  echo
  echo '```'
  echo "DURATION=$DURATION CONNECTIONS=$CONNECTIONS THREADS=$THREADS ROUNDS=$ROUNDS WARMUP=$WARMUP PLUGINS=$PLUGINS bench/sagas.sh"
  echo '```'
  echo
  echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency; median of $ROUNDS interleaved rounds, after a ${WARMUP} s warm-up of each target (not counted: ${WARM%; })."
  echo
  echo "| target | rate | p99 ms |"
  echo "|---|---|---|"
  echo "| durable 2-step sagas through txgate | $saga_rate sagas/s | $(median ${P99[saga]}) |"
  if [ "$PLUGINS" = 1 ]; then
    echo "| the same with idempotency, rate limit, compensation | $(median ${RATE[plugged]}) sagas/s | $(median ${P99[plugged]}) |"
  fi
  if [ -n "$BASELINE" ]; then
    echo "| the same sagas through the baseline build | $(median ${RATE[baseline]}) sagas/s | $(median ${P99[baseline]}) |"
  fi
  if [ -n "$BASELINE" ] && [ "$PLUGINS" = 1 ]; then
    echo "| the same with the three plugins, through the baseline build | $(median ${RATE[baseline-plugged]}) sagas/s | $(median ${P99[baseline-plugged]}) |"
  fi
  echo "| the banks directly (debit + credit calls) | $direct_calls calls/s = $((direct_calls / 2)) transfers/s | $(median ${P99[direct]}) |"
  echo
  echo "p99 of the durable sagas, round by round: ${P99[saga]}ms (the store grows through the run)."
  echo
  echo "- durable sagas: **$saga_rate/s**, p99 $(median ${P99[saga]}) ms (anchor: DTM, published 935 sagas/s on MySQL with 4 cores; $(awk -v r="$saga_rate" 'BEGIN { printf "%.1f", r / 935 }')× on half the cores)"
  echo "- $(ratio_line "sagas / direct transfers" "$saga_rate" "$((direct_calls / 2))" | bold_ratio) (the same banks taking the same calls directly, in this run)"
  if [ -n "$BASELINE" ]; then
    echo "- $(ratio_line "sagas / the baseline build's" "$saga_rate" "$(median ${RATE[baseline]})" | bold_ratio) (baseline: ${BASELINE_NAME:-$BASELINE}, same run)"
  fi
  if [ "$PLUGINS" = 1 ]; then
    echo "- $(ratio_line "with the three plugins / without" "$(median ${RATE[plugged]})" "$saga_rate" | bold_ratio)"
    if [ -n "$BASELINE" ]; then
      echo "- $(ratio_line "with the three plugins / the baseline build's with them" "$(median ${RATE[plugged]})" "$(median ${RATE[baseline-plugged]})" | bold_ratio)"
    fi
    echo "- group commits per saga, 20 sagas one at a time: $bare_commits without the plugins, $plugged_commits with them"
  fi
  echo "- store: $(du -sh "$work/store" | cut -f1) on disk after the run"
} >"$work/report.md"
echo
cat "$work/report.md"
publish "$block" "$work/report.md"
