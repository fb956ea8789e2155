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

median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

ratio_line() {
  awk -v name="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%s: %.2fx\n", name, (b > 0 ? a / b : 0) }'
}

machine_line() {
  echo "$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr), $(date -u +%Y-%m-%d)"
}
