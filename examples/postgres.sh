# A private PostgreSQL for the fleet demo and the fleet benchmark: a cluster in a directory of
# its own, on a loopback port, run as the `postgres` user (initdb refuses to run as root).
# Sourced, not run. Installs the server with apt when it is missing.

# pg_bin: the newest installed server's bin directory (Debian keeps it out of PATH).
pg_bin() {
  if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
    echo "installing postgresql ..." >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1
}

# pg_start DIR PORT [server settings...]: creates a cluster in DIR (a `txgate` superuser, trust
# authentication on loopback) and starts it on 127.0.0.1:PORT.
pg_start() {
  local dir=$1 port=$2
  shift 2
  local bin
  bin=$(pg_bin)
  mkdir -p "$dir"
  chown postgres:postgres "$dir"
  runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U txgate --auth=trust -E UTF8 >"$dir/initdb.log"
  local options="-p $port -c listen_addresses=127.0.0.1 -k $dir -c max_connections=200"
  for setting in "$@"; do options+=" -c $setting"; done
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "$options" -w start >/dev/null
}

# pg_stop DIR: stops the cluster at once.
pg_stop() {
  local bin
  bin=$(pg_bin)
  runuser -u postgres -- "$bin/pg_ctl" -D "$1/data" -m immediate stop >/dev/null 2>&1 || true
}

# pg_sql PORT SQL: runs one statement, unaligned output.
pg_sql() {
  "$(pg_bin)/psql" -h 127.0.0.1 -p "$1" -U txgate -d postgres -XAtc "$2"
}
