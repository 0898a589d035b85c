# Sourced by the replication benchmarks (needs $dir, $pids and $bin). Starts three
# nats-server processes (one JetStream cluster) on loopback free ports under $dir,
# appending their PIDs to $pids, and sets $urls (what --replicate and --follow take).
# NATS_GOGC, when set, is the servers' GOGC (docs/replication.md, "Running a
# three-node NATS cluster"); unset, Go's default (100).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cports=() rports=()
for i in 0 1 2; do cports+=("$(free_port)"); rports+=("$(free_port)"); done
routes="nats-route://127.0.0.1:${rports[0]}, nats-route://127.0.0.1:${rports[1]}, nats-route://127.0.0.1:${rports[2]}"
urls="nats://127.0.0.1:${cports[0]},nats://127.0.0.1:${cports[1]},nats://127.0.0.1:${cports[2]}"
for i in 0 1 2; do
  cat >"$dir/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:${cports[$i]}
jetstream { store_dir: "$dir/store-n$i" }
cluster { name: bench, listen: 127.0.0.1:${rports[$i]}, routes: [$routes] }
CONF
  if [ -n "${NATS_GOGC:-}" ]; then
    GOGC=$NATS_GOGC nats-server -c "$dir/n$i.conf" >"$dir/n$i.log" 2>&1 &
  else
    nats-server -c "$dir/n$i.conf" >"$dir/n$i.log" 2>&1 &
  fi
  pids+=($!)
done
for _ in $(seq 300); do grep -q 'metadata leader' "$dir"/n*.log && break; sleep 0.1; done

# start_serve NAME ARGS...: `serve --listen 127.0.0.1:0 --log-level warn ARGS...` in
# the background (stdout in $dir/NAME.out, stderr appended to $dir/NAME.log); sets
# $serve_pid and $serve_addr once it listens, exits the script when it does not.
start_serve() {
  local name=$1; shift
  "$bin" serve --listen 127.0.0.1:0 --log-level warn "$@" >"$dir/$name.out" 2>>"$dir/$name.log" &
  serve_pid=$!
  for _ in $(seq 300); do grep -q '^listening on' "$dir/$name.out" && break; sleep 0.1; done
  serve_addr=$(sed -n 's/^listening on //p' "$dir/$name.out")
  if [ -z "$serve_addr" ]; then
    echo "serve $* did not start:" >&2
    cat "$dir/$name.log" >&2
    exit 1
  fi
}
