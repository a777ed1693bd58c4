# Sourced by run.sh and run-matrix.sh: the real sztp-server the integration targets talk to.
#   start_integration_server PYTHON STATE_DIR CONFIG_FILE
# starts sztp-server (from PATH) on free loopback ports with its state in STATE_DIR, waits until
# it answers /healthz, writes the targets' variables to CONFIG_FILE and sets server_pid.
start_integration_server() {
  local python=$1 state=$2 config=$3 admin_port device_port
  admin_port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  device_port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$state"
  cat >"$state/server.yaml" <<CONFIG
database_url: sqlite:///$state/sztp.db
device_listeners: [{host: 127.0.0.1, port: $device_port}]
admin_listener: {host: 127.0.0.1, port: $admin_port}
admin_token_file: $state/admin-token
log_level: warning
CONFIG
  sztp-server run --config "$state/server.yaml" 2>"$state/server.log" &
  server_pid=$!
  for _ in $(seq 100); do
    if [ -s "$state/admin-token" ] && "$python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1])" \
      "http://127.0.0.1:$admin_port/healthz" 2>/dev/null; then break; fi
    sleep 0.1
  done
  cat >"$config" <<VARS
sztp_server_url: http://127.0.0.1:$admin_port
sztp_device_url: http://127.0.0.1:$device_port
sztp_token: $(cat "$state/admin-token")
sztp_device_password: integration-$RANDOM-$RANDOM
VARS
}
