#!/usr/bin/env bash
# Plain-proxy benchmark, all in one run on loopback against the same backend (the demo bank):
#   direct  - wrk straight at the bank
#   nginx   - nginx proxy_pass with keepalive to the bank
#   txgate  - txgate's plain route to the bank
# Rounds are interleaved (direct, nginx, txgate, direct, ...) so drift on a noisy machine hits all
# three alike; the median round of each is reported, with txgate/nginx ratios.
#
# Usage: bench/proxy.sh            (env: DURATION=10 CONNECTIONS=64 THREADS=2 ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
BANK_PORT=17101
NGINX_PORT=17102
TXGATE_PORT=17103
ADMIN_PORT=17104
PATH_UNDER_TEST=/accounts/alice

need_tool wrk wrk
refuse_busy "$BANK_PORT" "$NGINX_PORT" "$TXGATE_PORT" "$ADMIN_PORT"
need_tool nginx nginx-light
build_release

work=$(mktemp -d)
trap 'stop_all; rm -rf "$work"' EXIT

start_bank "$BANK_PORT" "$work/bank.log"

cat >"$work/nginx.conf" <<EOF
worker_processes auto;
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

cat >"$work/txgate.toml" <<EOF
[server]
listen = "127.0.0.1:$TXGATE_PORT"
admin_listen = "127.0.0.1:$ADMIN_PORT"
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
wait_port "$NGINX_PORT"
wait_port "$TXGATE_PORT"

declare -A RPS P50 P99
for round in $(seq "$ROUNDS"); do
  for target in direct nginx txgate; do
    case $target in
      direct) port=$BANK_PORT ;;
      nginx) port=$NGINX_PORT ;;
      txgate) port=$TXGATE_PORT ;;
    esac
    read -r rps p50 p99 < <(run_wrk "http://127.0.0.1:$port$PATH_UNDER_TEST")
    RPS[$target]+="$rps "
    P50[$target]+="$p50 "
    P99[$target]+="$p99 "
    echo "round $round $target: $rps req/s, p50 $p50 ms, p99 $p99 ms" >&2
  done
done

echo
echo "machine: $(machine_line)"
echo "command: DURATION=$DURATION CONNECTIONS=$CONNECTIONS THREADS=$THREADS ROUNDS=$ROUNDS bench/proxy.sh"
echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency http://127.0.0.1:PORT$PATH_UNDER_TEST; median of $ROUNDS interleaved rounds"
echo
echo "| target | req/s | p50 ms | p99 ms |"
echo "|---|---|---|---|"
for target in direct nginx txgate; do
  echo "| $target | $(median ${RPS[$target]}) | $(median ${P50[$target]}) | $(median ${P99[$target]}) |"
done
echo
ratio_line "txgate/nginx req/s" "$(median ${RPS[txgate]})" "$(median ${RPS[nginx]})"
ratio_line "txgate/nginx p99" "$(median ${P99[txgate]})" "$(median ${P99[nginx]})"
ratio_line "txgate/direct req/s" "$(median ${RPS[txgate]})" "$(median ${RPS[direct]})"
