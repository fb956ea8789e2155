#!/usr/bin/env bash
# Plugin overhead, in one run on loopback against the same backend (the demo bank):
#   txgate bare       - a plain route, no plugins
#   txgate noops      - the same route with three no-op plugins (each implements on-request)
#   txgate same-work  - the same route with the shipped rate_limit (GCRA on the route, volatile
#                       state) and add_header plugins; add_header declares both of its edits
#                       reusable (decisions.reuse, reuse-response), so after the first request
#                       the gateway applies them without calling it, and calls only rate_limit
#   txgate work-calls - the same with `reuse_decisions = false` on add_header: every hook called
#   txgate jwt-rs256  - the same route with the shipped jwt_auth plugin verifying an RS256 token
#                       (as configured by default: a token verified once is remembered, and the
#                       gateway reuses the plugin's decision for it without a call)
#   txgate jwt-es256  - the same with an ES256 token
#   txgate jwt-*-full - the same with `verified_tokens_max = 0`: every signature checked
#   envoy bare        - Envoy with the router filter only
#   envoy same-work   - Envoy with a proxy-wasm filter (bench/envoy-filter, V8) doing that same
#                       work: a GCRA limit in shared data updated by compare-and-swap, and a header
#                       on the request and the response
#   envoy jwt-rs256/es256 - Envoy with its own jwt_authn filter verifying the same tokens against
#                       the same key sets (bench/jwt.sh), one listener per algorithm, with its JWT
#                       cache as large as jwt_auth's
#   envoy jwt-*-full  - the same without the cache (Envoy's default): every signature checked
# The keys (RSA 2048, P-256) and the tokens are made with openssl at the start of each run. Both
# products check the issuer and audience, keep the token back and pass `sub` upstream as a header;
# the script checks that they do, and that a missing or forged token is refused, before it
# measures.
# Rounds are interleaved so drift hits all alike; the median round of each is reported. What
# matters is each product's loss against its own bare proxy, measured in the same run. Around
# every wrk run the CPU time of the proxy process (/proc/PID/stat) and of the whole machine
# (/proc/stat) is read, and divided by the requests served. A run with any answer from 400 up
# stops the script: a benchmark of refusals measures nothing.
# Writes the `plugins` block of bench/RESULTS.md.
#
# Each proxy runs WORKERS worker threads (default 1, as in bench/proxy.sh: txgate's `workers`,
# Envoy's `--concurrency`). What is compared is the CPU each request costs; with two workers on
# the two cores that wrk and the bank share too, both products' figures also carry what the
# workers cost each other (the cores, and the one rate-limit bucket both workers update).
#
# Usage: bench/plugins.sh   (env: DURATION=10 CONNECTIONS=64 THREADS=2 ROUNDS=3 WARMUP=5 WORKERS=1)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
source bench/jwt.sh

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-1}
BANK_PORT=17201
TXGATE_PORT=17203
ADMIN_PORT=17204
ENVOY_BARE_PORT=17205
ENVOY_WORK_PORT=17206
ENVOY_JWT_RS_PORT=17209
ENVOY_JWT_ES_PORT=17210
ENVOY_JWT_RS_FULL_PORT=17212
ENVOY_JWT_ES_FULL_PORT=17213
ENVOY_ADMIN_PORTS=(17207 17208 17211)
# Limits far above what two cores can send: the work is done on every request, none is refused.
RATE=1000000000

need_tool wrk wrk
need_tool openssl openssl
refuse_busy "$BANK_PORT" "$TXGATE_PORT" "$ADMIN_PORT" "$ENVOY_BARE_PORT" "$ENVOY_WORK_PORT" \
  "$ENVOY_JWT_RS_PORT" "$ENVOY_JWT_ES_PORT" "$ENVOY_JWT_RS_FULL_PORT" "$ENVOY_JWT_ES_FULL_PORT" \
  "${ENVOY_ADMIN_PORTS[@]}"
need_envoy
build_release
rustup target add wasm32-wasip1 wasm32-wasip2 >/dev/null 2>&1
cargo build -q --release --target wasm32-wasip2 --target-dir target/wasm \
  -p txgate-test-noop -p txgate-plugin-rate-limit -p txgate-plugin-add-header \
  -p txgate-plugin-jwt-auth
cargo build -q --release --target wasm32-wasip1 --target-dir target/wasm -p txgate-bench-envoy-filter
WASM2="$PWD/target/wasm/wasm32-wasip2/release"
FILTER="$PWD/target/wasm/wasm32-wasip1/release/txgate_bench_envoy_filter.wasm"

work=$(mktemp -d)
trap 'stop_all; [ -n "${KEEP_LOGS:-}" ] && cp -r "$work" /tmp/bench-plugins-logs; rm -rf "$work"' EXIT
jwt_material "$work/jwt"
start_bank "$BANK_PORT" "$work/bank.log"

# jwt_plugin NAME ALG [VERIFIED_TOKENS_MAX]: a jwt_auth instance configured as the Envoy listener
# of that algorithm is.
jwt_plugin() {
  cat <<TOML
[plugins.$1]
module = "$WASM2/txgate_plugin_jwt_auth.wasm"
[plugins.$1.config]
jwks = '''$(cat "$work/jwt/jwks-$2.json")'''
issuer = "$JWT_ISSUER"
audience = "$JWT_AUDIENCE"
claims_to_headers = { sub = "$JWT_CLAIM_HEADER" }
${3:+verified_tokens_max = $3}
TOML
}

# route NAME [PLUGINS]: a route under /NAME/ to the bank; PLUGINS is a TOML list.
route() {
  cat <<TOML
[[routes]]
name = "$1"
path_prefix = "/$1/"
strip_prefix = true
upstream = "bank"
${2:+plugins = $2}
TOML
}

{
  cat <<CONFIG
[server]
listen = "127.0.0.1:$TXGATE_PORT"
admin_listen = "127.0.0.1:$ADMIN_PORT"
workers = $WORKERS
[store]
dir = "$work/store"
[upstreams.bank]
url = "http://127.0.0.1:$BANK_PORT"
[plugins.noop_a]
module = "$WASM2/txgate_test_noop.wasm"
[plugins.noop_b]
module = "$WASM2/txgate_test_noop.wasm"
[plugins.noop_c]
module = "$WASM2/txgate_test_noop.wasm"
[plugins.rate_limit]
module = "$WASM2/txgate_plugin_rate_limit.wasm"
state = "volatile"
[plugins.rate_limit.config]
key = "route"
per_second = $RATE
burst = $RATE
[plugins.add_header]
module = "$WASM2/txgate_plugin_add_header.wasm"
[plugins.add_header.config]
name = "x-served-by"
value = "txgate"
[plugins.add_header_calls]
module = "$WASM2/txgate_plugin_add_header.wasm"
reuse_decisions = false
[plugins.add_header_calls.config]
name = "x-served-by"
value = "txgate"
CONFIG
  jwt_plugin jwt_rs256 rs256
  jwt_plugin jwt_es256 es256
  jwt_plugin jwt_rs256_full rs256 0
  jwt_plugin jwt_es256_full es256 0
  route bare
  route noops '["noop_a", "noop_b", "noop_c"]'
  route work '["rate_limit", "add_header"]'
  route work-calls '["rate_limit", "add_header_calls"]'
  route jwt-rs256 '["jwt_rs256"]'
  route jwt-es256 '["jwt_es256"]'
  route jwt-rs256-full '["jwt_rs256_full"]'
  route jwt-es256-full '["jwt_es256_full"]'
} >"$work/txgate.toml"
start_txgate "$work/txgate.toml" "$work/txgate.log"
envoy_config "$ENVOY_BARE_PORT" "${ENVOY_ADMIN_PORTS[0]}" "$BANK_PORT" >"$work/envoy-bare.yaml"
envoy_config "$ENVOY_WORK_PORT" "${ENVOY_ADMIN_PORTS[1]}" "$BANK_PORT" "$FILTER" \
  "{\"per_second\": $RATE, \"burst\": $RATE, \"header\": \"x-served-by\", \"value\": \"envoy\"}" \
  >"$work/envoy-work.yaml"
envoy_jwt_config "${ENVOY_ADMIN_PORTS[2]}" "$BANK_PORT" "$work/jwt" "$ENVOY_JWT_RS_PORT" \
  "$ENVOY_JWT_ES_PORT" "$ENVOY_JWT_RS_FULL_PORT" "$ENVOY_JWT_ES_FULL_PORT" >"$work/envoy-jwt.yaml"
# The process whose CPU each target's requests cost.
declare -A PID=()
for name in bare work jwt; do
  start_envoy "$work/envoy-$name.yaml" "$work/envoy-$name.log"
  PID[envoy-$name]=${PIDS[-1]}
done
wait_port "$TXGATE_PORT"
wait_port "$ENVOY_BARE_PORT"
wait_port "$ENVOY_WORK_PORT"
wait_port "$ENVOY_JWT_RS_PORT"
wait_port "$ENVOY_JWT_ES_PORT"
wait_port "$ENVOY_JWT_RS_FULL_PORT"
wait_port "$ENVOY_JWT_ES_FULL_PORT"
# The filters must really run: their header on the answer proves it.
sleep 1
curl -sfi "http://127.0.0.1:$ENVOY_WORK_PORT/accounts/alice" | grep -qi '^x-served-by: envoy' ||
  { echo "the Envoy filter is not running; see $work/envoy-work.log" >&2; exit 1; }
for route in work work-calls; do
  curl -sfi "http://127.0.0.1:$TXGATE_PORT/$route/accounts/alice" | grep -qi '^x-served-by: txgate' ||
    { echo "the txgate plugins are not running; see $work/txgate.log" >&2; exit 1; }
done
TOKEN_RS256=$(cat "$work/jwt/token-rs256")
TOKEN_ES256=$(cat "$work/jwt/token-es256")
for full in "" -full; do
  jwt_check "txgate-jwt-rs256$full" "http://127.0.0.1:$TXGATE_PORT/jwt-rs256$full/echo/jwt" "$TOKEN_RS256"
  jwt_check "txgate-jwt-es256$full" "http://127.0.0.1:$TXGATE_PORT/jwt-es256$full/echo/jwt" "$TOKEN_ES256"
done
jwt_check envoy-jwt-rs256 "http://127.0.0.1:$ENVOY_JWT_RS_PORT/echo/jwt" "$TOKEN_RS256"
jwt_check envoy-jwt-es256 "http://127.0.0.1:$ENVOY_JWT_ES_PORT/echo/jwt" "$TOKEN_ES256"
jwt_check envoy-jwt-rs256-full "http://127.0.0.1:$ENVOY_JWT_RS_FULL_PORT/echo/jwt" "$TOKEN_RS256"
jwt_check envoy-jwt-es256-full "http://127.0.0.1:$ENVOY_JWT_ES_FULL_PORT/echo/jwt" "$TOKEN_ES256"

JWT_TARGETS="jwt-rs256 jwt-es256 jwt-rs256-full jwt-es256-full"
TXGATE_TARGETS="txgate-bare txgate-noops txgate-work txgate-work-calls ${JWT_TARGETS//jwt-/txgate-jwt-}"
ENVOY_TARGETS="envoy-bare envoy-work ${JWT_TARGETS//jwt-/envoy-jwt-}"
TARGETS="$TXGATE_TARGETS $ENVOY_TARGETS"
declare -A URL=(
  [txgate-bare]="http://127.0.0.1:$TXGATE_PORT/bare/accounts/alice"
  [txgate-noops]="http://127.0.0.1:$TXGATE_PORT/noops/accounts/alice"
  [txgate-work]="http://127.0.0.1:$TXGATE_PORT/work/accounts/alice"
  [txgate-work-calls]="http://127.0.0.1:$TXGATE_PORT/work-calls/accounts/alice"
  [txgate-jwt-rs256]="http://127.0.0.1:$TXGATE_PORT/jwt-rs256/accounts/alice"
  [txgate-jwt-es256]="http://127.0.0.1:$TXGATE_PORT/jwt-es256/accounts/alice"
  [envoy-bare]="http://127.0.0.1:$ENVOY_BARE_PORT/accounts/alice"
  [envoy-work]="http://127.0.0.1:$ENVOY_WORK_PORT/accounts/alice"
  [envoy-jwt-rs256]="http://127.0.0.1:$ENVOY_JWT_RS_PORT/accounts/alice"
  [envoy-jwt-es256]="http://127.0.0.1:$ENVOY_JWT_ES_PORT/accounts/alice"
  [txgate-jwt-rs256-full]="http://127.0.0.1:$TXGATE_PORT/jwt-rs256-full/accounts/alice"
  [txgate-jwt-es256-full]="http://127.0.0.1:$TXGATE_PORT/jwt-es256-full/accounts/alice"
  [envoy-jwt-rs256-full]="http://127.0.0.1:$ENVOY_JWT_RS_FULL_PORT/accounts/alice"
  [envoy-jwt-es256-full]="http://127.0.0.1:$ENVOY_JWT_ES_FULL_PORT/accounts/alice"
)
declare -A AUTH=()
for target in $JWT_TARGETS; do
  token=$TOKEN_ES256
  [[ $target == jwt-rs256* ]] && token=$TOKEN_RS256
  AUTH[txgate-$target]=$token
  AUTH[envoy-$target]=$token
  PID[envoy-$target]=${PID[envoy-jwt]}
done
for target in $TXGATE_TARGETS; do PID[$target]=$TXGATE_PID; done

# wrk_args TARGET: the extra wrk arguments of a target (its token).
wrk_args() {
  if [ -n "${AUTH[$1]:-}" ]; then printf '%s\0' -H "Authorization: Bearer ${AUTH[$1]}"; fi
}

# wrk counts only answers from 400 up; a 3xx would pass it, so every target must answer exactly
# 200 once before it is measured.
for target in $TARGETS; do
  mapfile -d '' args < <(wrk_args "$target")
  status=$(curl -s -o /dev/null -w '%{http_code}' "${args[@]}" "${URL[$target]}")
  [ "$status" = 200 ] || { echo "$target answers $status, not 200" >&2; exit 1; }
done

# Warm-up, not measured: V8 runs Envoy's Wasm filter on its baseline compiler first and optimises
# hot functions later, and txgate's instance pools fill. Without it, a run measured Envoy's
# filter at about 32 µs per request in its first three rounds and 8.5 µs in its last two.
WARMUP=${WARMUP:-5}
for target in $TARGETS; do
  mapfile -d '' args < <(wrk_args "$target")
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" "${args[@]}" "${URL[$target]}" >/dev/null
done

declare -A RPS=() P99=() CPU=() BOX=()
for round in $(seq "$ROUNDS"); do
  for target in $TARGETS; do
    mapfile -d '' args < <(wrk_args "$target")
    cpu_before=$(cpu_ticks "${PID[$target]}")
    box_before=$(box_ticks)
    read -r rps p50 p99 requests bad errors < <(wrk_counts "${URL[$target]}" "${args[@]}")
    cpu=$(us_per_request $(($(cpu_ticks "${PID[$target]}") - cpu_before)) "$requests")
    box=$(us_per_request $(($(box_ticks) - box_before)) "$requests")
    echo "round $round $target: $rps req/s, p50 $p50 ms, p99 $p99 ms, proxy CPU $cpu µs/req," \
      "box CPU $box µs/req, $requests requests, $bad non-2xx, $errors socket errors" >&2
    if [ "$bad" -gt 0 ] || [ "$requests" -eq 0 ]; then
      echo "$target answered $bad of $requests requests with an error status; not a benchmark" >&2
      exit 1
    fi
    RPS[$target]+="$rps "
    P99[$target]+="$p99 "
    CPU[$target]+="$cpu "
    BOX[$target]+="$box "
  done
done

med() { median ${RPS[$1]}; }
cpu() { median ${CPU[$1]}; }

# per_round OP A B: OP (ratio: A's req/s over B's; added: A's proxy CPU per request minus B's,
# in µs) in each round, where both were measured minutes apart rather than a whole run apart.
# Prints the median, then each round's value: "MEDIAN r1, r2, ...".
per_round() {
  local op=$1 values=() i
  local -a ra=(${RPS[$2]}) rb=(${RPS[$3]}) ca=(${CPU[$2]}) cb=(${CPU[$3]})
  for i in "${!ra[@]}"; do
    values+=("$(awk -v op="$op" -v ra="${ra[$i]}" -v rb="${rb[$i]}" -v ca="${ca[$i]}" -v cb="${cb[$i]}" '
      BEGIN {
        if (op == "ratio") printf "%.2f", (rb > 0 ? ra / rb : 0)
        else printf "%.1f", ca - cb
      }')")
  done
  echo "$(median "${values[@]}") $(IFS=,; echo "${values[*]}" | sed 's/,/, /g')"
}

# ratio_of A B LABEL: "LABEL: **MEDIAN×** (rounds ...)" from the per-round ratios of A to B.
ratio_of() {
  local median rounds
  read -r median rounds < <(per_round ratio "$1" "$2")
  echo "$3: **${median}×** (rounds $rounds)"
}

# added A B: the proxy CPU per request A costs over B, in µs, median of the rounds.
added() { per_round added "$1" "$2" | cut -d' ' -f1; }
# added_rounds A B: the same, with each round's value.
added_rounds() {
  local median rounds
  read -r median rounds < <(per_round added "$1" "$2")
  echo "$median µs (rounds $rounds)"
}

# jwt_lines ALG [-full]: the JWT figures of one algorithm, both products with their verified-token
# caches, or (-full) both checking every signature.
jwt_lines() {
  local alg=$1 name=${1,,}${2:-} how="verified tokens remembered"
  [ -n "${2:-}" ] && how="every signature checked"
  echo "- $(ratio_of "txgate-jwt-$name" txgate-bare "txgate, jwt_auth $alg / bare ($how)") (goal: above Envoy's, next line)"
  echo "- $(ratio_of "envoy-jwt-$name" envoy-bare "envoy, jwt_authn $alg / bare ($how)") (the same check in Envoy, measured in this run)"
  echo "- $(ratio_line "txgate jwt_auth / envoy jwt_authn, $alg req/s ($how)" "$(med "txgate-jwt-$name")" "$(med "envoy-jwt-$name")" | bold_ratio) (goal: above 1)"
  echo "- proxy CPU the $alg check adds per request ($how): txgate $(added_rounds "txgate-jwt-$name" txgate-bare), Envoy $(added_rounds "envoy-jwt-$name" envoy-bare)"
}

# work_added_ratio TARGET: the rounds' CPU added by the rate limit and header work in Envoy over
# what it adds in TARGET (txgate-work or txgate-work-calls), and their median.
work_added_ratio() {
  local -a t=($(per_round added "$1" txgate-bare | cut -d' ' -f2- | tr -d ,))
  local -a e=($(per_round added envoy-work envoy-bare | cut -d' ' -f2- | tr -d ,))
  local values=() i
  for i in "${!t[@]}"; do
    values+=("$(awk -v t="${t[$i]}" -v e="${e[$i]}" 'BEGIN { printf "%.2f", (t > 0 ? e / t : 0) }')")
  done
  echo "**$(median "${values[@]}")×** (rounds $(IFS=,; echo "${values[*]}" | sed 's/,/, /g'))"
}

{
  echo "Machine and date: $(machine_line); Envoy $ENVOY_VERSION with V8."
  echo
  echo '```'
  echo "DURATION=$DURATION CONNECTIONS=$CONNECTIONS THREADS=$THREADS ROUNDS=$ROUNDS WORKERS=$WORKERS bench/plugins.sh"
  echo '```'
  echo
  echo "$WORKERS worker(s) per proxy; wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, after a ${WARMUP}-second run of each target that is not measured; median of $ROUNDS interleaved rounds in the table; each ratio and added CPU below is the median of the per-round values (a target against its bare proxy in the same round), listed after it; no run had an answer from 400 up. Proxy CPU: the proxy process's user and system time (/proc/PID/stat) over the run, per request served; box CPU: the whole machine's busy time (/proc/stat) over the run, per request (wrk and the bank included). JWT: an RSA 2048 and a P-256 key made at the start of the run; both products check issuer, audience and expiry on every request, keep the token back and pass \`sub\` upstream as a header. The \`jwt-*\` targets remember a token whose signature verified (jwt_auth's default, \`verified_tokens_max = 1024\`, with which the gateway also reuses the plugin's decision for the same Authorization header until the token expires, without a call; Envoy's \`jwt_cache_config\` with 1024 entries, off by default); the \`jwt-*-full\` targets check every signature and call the plugin on every request (\`verified_tokens_max = 0\`; Envoy's default)."
  echo
  echo "| target | req/s | p99 ms | proxy CPU µs/req | box CPU µs/req |"
  echo "|---|---|---|---|---|"
  for target in $TARGETS; do
    echo "| $target | $(med "$target") | $(median ${P99[$target]}) | $(cpu "$target") | $(median ${BOX[$target]}) |"
  done
  echo
  echo "- $(ratio_of txgate-noops txgate-bare "txgate, three no-op plugins / bare") (goal: 0.90 or more)"
  echo "- $(ratio_of txgate-work txgate-bare "txgate, rate limit + header / bare") (anchors: Envoy's Wasm pass-through filter, published −5%, i.e. 0.95×; Istio's Wasm telemetry, published more than 10% loss)"
  echo "- $(ratio_of envoy-work envoy-bare "envoy, rate limit + header filter / bare") (the same work in Envoy, measured in this run)"
  echo "- $(ratio_line "txgate with plugins / envoy with filter, req/s" "$(med txgate-work)" "$(med envoy-work)" | bold_ratio)"
  echo "- proxy CPU the rate limit + header work adds per request: txgate $(added_rounds txgate-work txgate-bare), Envoy $(added_rounds envoy-work envoy-bare)"
  echo "- envoy / txgate, proxy CPU added by rate limit + header: $(work_added_ratio txgate-work) (goal: 2 or more, txgate's added CPU at most half of Envoy's)"
  echo "- $(ratio_of txgate-work-calls txgate-bare "txgate, rate limit + header / bare, every hook called") (\`reuse_decisions = false\` on add_header)"
  echo "- proxy CPU the rate limit + header work adds per request, every hook called: txgate $(added_rounds txgate-work-calls txgate-bare)"
  echo "- envoy / txgate, proxy CPU added by rate limit + header, every hook called: $(work_added_ratio txgate-work-calls)"
  jwt_lines RS256
  jwt_lines ES256
  jwt_lines RS256 -full
  jwt_lines ES256 -full
} >"$work/report.md"
echo
cat "$work/report.md"
publish plugins "$work/report.md"
