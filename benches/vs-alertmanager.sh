#!/usr/bin/env bash
# sevroute and Prometheus Alertmanager side by side, in one run on this
# machine: starts each with an equivalent configuration (temp dirs, free
# loopback ports, durability on in sevroute), runs benches/loadgen.rs
# against each in turn, prints a table with the sevroute/Alertmanager ratio
# of every figure, and stops everything it started.
#
#   benches/vs-alertmanager.sh            # the full run (100k active alerts)
#   ACTIVE=20000 PROBES=50 benches/vs-alertmanager.sh   # a quick one
#
# Environment: SEVROUTE_BIN (default: the release build), ALERTMANAGER_BIN
# (default: prometheus-alertmanager or
# alertmanager on PATH), ACTIVE, GROUPS_N, PROBES, LOAD_RATE, CONNECTIONS,
# ONLY=sevroute or ONLY=alertmanager runs one side (no table),
# KEEP=1 keeps the temp dir (logs, results) for a look afterwards.
set -euo pipefail

cd "$(dirname "$0")/.."

die() { echo "vs-alertmanager: $*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo not found: install Rust from https://rustup.rs"
command -v curl >/dev/null || die "curl not found: apt-get install curl"
AM_BIN=${ALERTMANAGER_BIN:-$(command -v prometheus-alertmanager || command -v alertmanager || true)}
[ -n "$AM_BIN" ] && [ -x "$AM_BIN" ] || die "Alertmanager not found: apt-get install prometheus-alertmanager \
(Debian/Ubuntu), or download it from https://prometheus.io/download/ and set ALERTMANAGER_BIN"

ACTIVE=${ACTIVE:-100000}
GROUPS_N=${GROUPS_N:-1000}
PROBES=${PROBES:-1000}
LOAD_RATE=${LOAD_RATE:-10000}
CONNECTIONS=${CONNECTIONS:-16}

echo "building sevroute (release) and the load generator (bench profile)..." >&2
cargo build --release --quiet --bin sevroute
LOADGEN=$(cargo bench --bench loadgen --no-run 2>&1 | sed -n 's/.*Executable.*(\(.*loadgen-[0-9a-f]*\)).*/\1/p' | tail -1)
[ -x "$LOADGEN" ] || die "could not find the loadgen bench executable"
SEVROUTE=${SEVROUTE_BIN:-$PWD/target/release/sevroute}

FAILED=0
WORK=$(mktemp -d -t vs-alertmanager.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "${KEEP:-}" = 1 ]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits (at most 30 s) until URL answers 200; fails if PID exits first.
wait_ready() {
    local url=$1 pid=$2 log=$3
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "the server exited before it was ready"; }
        curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$log" >&2
    die "$url not ready within 30 s"
}

stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

loadgen_run() {
    local name=$1 base=$2 pid=$3 receiver=$4
    "$LOADGEN" run --name "$name" --url "$base" --pid "$pid" --receiver "$receiver" \
        --out "$WORK/$name.json" --active "$ACTIVE" --groups "$GROUPS_N" \
        --probes "$PROBES" --load-rate "$LOAD_RATE" --connections "$CONNECTIONS"
}

if [ "${ONLY:-sevroute}" = sevroute ]; then
# --- sevroute: durable SQLite store (WAL, synchronous=FULL), one group per
# alertname+service, no gathering wait, no re-announcement within the run.
SR=$WORK/sevroute
mkdir -p "$SR/rules"
SR_PORT=$("$LOADGEN" free-port)
RECV=127.0.0.1:$("$LOADGEN" free-port)
"$LOADGEN" rules --receiver "$RECV" > "$SR/rules/bench.sev"
cat > "$SR/sevroute.toml" <<TOML
[server]
listen = "127.0.0.1:$SR_PORT"
public_url = "http://127.0.0.1:$SR_PORT"
[rules]
path = "rules"
[store]
path = "data/sevroute.db"
[ingest]
resolve_timeout_secs = 3600
TOML
(cd "$SR" && exec env RUST_LOG=warn "$SEVROUTE" serve --config sevroute.toml) >"$SR/sevroute.log" 2>&1 &
SR_PID=$!
PIDS+=("$SR_PID")
wait_ready "http://127.0.0.1:$SR_PORT/readyz" "$SR_PID" "$SR/sevroute.log"
echo "sevroute $("$SEVROUTE" --version 2>/dev/null || echo) on 127.0.0.1:$SR_PORT (pid $SR_PID)" >&2
loadgen_run sevroute "http://127.0.0.1:$SR_PORT" "$SR_PID" "$RECV" || FAILED=1
stop "$SR_PID"
fi

if [ "${ONLY:-alertmanager}" = alertmanager ]; then
# --- Alertmanager: the same grouping, no group wait, the same resolve
# timeout, no clustering.
AM=$WORK/alertmanager
mkdir -p "$AM"
AM_PORT=$("$LOADGEN" free-port)
RECV=127.0.0.1:$("$LOADGEN" free-port)
cat > "$AM/alertmanager.yml" <<YML
global:
  resolve_timeout: 1h
route:
  receiver: receiver
  group_by: [alertname, service]
  group_wait: 0s
  group_interval: 1h
  repeat_interval: 4h
receivers:
  - name: receiver
    webhook_configs:
      - url: http://$RECV/hook
        send_resolved: true
YML
"$AM_BIN" --config.file="$AM/alertmanager.yml" --storage.path="$AM/data" \
    --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= \
    --log.level=warn >"$AM/alertmanager.log" 2>&1 &
AM_PID=$!
PIDS+=("$AM_PID")
wait_ready "http://127.0.0.1:$AM_PORT/-/ready" "$AM_PID" "$AM/alertmanager.log"
echo "$("$AM_BIN" --version 2>&1 | head -1) on 127.0.0.1:$AM_PORT (pid $AM_PID)" >&2
loadgen_run alertmanager "http://127.0.0.1:$AM_PORT" "$AM_PID" "$RECV" || FAILED=1
stop "$AM_PID"
fi

if [ -z "${ONLY:-}" ]; then
echo
echo "sevroute vs Alertmanager, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$LOADGEN" table "$WORK/sevroute.json" "$WORK/alertmanager.json"
fi
[ "$FAILED" = 0 ] || die "a run lost or duplicated pages, or failed (see above)"
