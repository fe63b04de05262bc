# Sourced by the measuring scripts (window.sh, profile.sh): parses `N MODE [SERVER ARGS...]`,
# starts the server (TICKWIRE_SERVER) on a free loopback port and waits until it listens, then
# starts N bots (TICKWIRE_BOTS) for 20 s with 50 verifying, their report to $TMP/r.json.
# Sets N, MODE, TMP (removed on exit, the server stopped), SPID and BPID.
N=${1:?usage: $0 N MODE [SERVER ARGS...]}
MODE=${2:?usage: $0 N MODE [SERVER ARGS...]}
shift 2
SERVER=${TICKWIRE_SERVER:-target/release/tickwire-server}
BOTS=${TICKWIRE_BOTS:-target/release/tickwire-bots}
TMP=$(mktemp -d)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$SERVER" --bind "127.0.0.1:$PORT" --visibility "$MODE" "$@" >"$TMP/server.log" 2>&1 &
SPID=$!
trap 'kill -INT $SPID 2>/dev/null; sleep 1; kill -KILL $SPID 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 1 100); do
  python3 -c "import socket,sys;s=socket.socket();sys.exit(s.connect_ex(('127.0.0.1',$PORT)))" && break
  sleep 0.1
done
"$BOTS" --url "ws://127.0.0.1:$PORT/ws" --bots "$N" --duration 20 --verify 50 --quiet \
  --json "$TMP/r.json" >"$TMP/bots.log" 2>&1 &
BPID=$!
