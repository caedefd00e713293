#!/usr/bin/env bash
# A/B two huddle-server binaries with huddle-load: fan-out and light load, N runs each,
# interleaved (A, B, A, B, ...) so the VM's drift in speed falls on both alike. Prints the
# median of each figure per binary and the change of B against A.
#
# Usage: scripts/ab-compare.sh A-SERVER B-SERVER [LOAD-TOOL]
#   RUNS (default 5), SCENARIOS (default "fanout light"), FANOUT_MESSAGES (default 20000),
#   LIGHT_MESSAGES (default 1000), PORT (default 17697) tune it; KEEP=DIR keeps the raw JSON
#   lines there. Every run has a time limit; the servers are stopped by PID.
set -euo pipefail

A=$(realpath "$1")
B=$(realpath "$2")
LOAD=$(realpath "${3:-target/release/huddle-load}")
RUNS=${RUNS:-5}
FANOUT_MESSAGES=${FANOUT_MESSAGES:-20000}
LIGHT_MESSAGES=${LIGHT_MESSAGES:-1000}
PORT=${PORT:-17697}
SCENARIOS=${SCENARIOS:-fanout light}
WORK=$(mktemp -d)
SERVER_PID=""

cleanup() {
    stop_server
    if [[ -n "${KEEP:-}" ]]; then
        mkdir -p "$KEEP"
        cp "$WORK"/*.jsonl "$KEEP"/ 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() {
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "server did not open port $PORT" >&2
    return 1
}

start_server() {
    local bin=$1 label=$2
    "$bin" "$PORT" --bind 127.0.0.1 --data-dir "$WORK/data-$label" --max-clients 2000 \
        --allow-guests --flood-rate 0 --max-per-ip 0 --connects-per-minute 0 \
        >>"$WORK/server.out" 2>>"$WORK/server.err" &
    SERVER_PID=$!
    wait_port
}

stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# run LABEL BINARY SCENARIO FLAGS...: a fresh server, one scenario, its JSON line kept.
run() {
    local label=$1 bin=$2 scenario=$3
    shift 3
    start_server "$bin" "$label"
    timeout 300 "$LOAD" --port "$PORT" --server-pid "$SERVER_PID" --label "$label" --json \
        --time-limit 120 --sasl --register "$scenario" "$@" \
        >>"$WORK/$scenario.jsonl" 2>>"$WORK/load.log" || echo "$label $scenario: exit $?" >&2
    stop_server
}

for i in $(seq 1 "$RUNS"); do
    for side in A B; do
        bin=$A
        [[ $side == B ]] && bin=$B
        if [[ " $SCENARIOS " == *" fanout "* ]]; then
            run "$side" "$bin" fanout --clients 20 --messages "$FANOUT_MESSAGES"
        fi
        if [[ " $SCENARIOS " == *" light "* ]]; then
            run "$side" "$bin" light --clients 20 --rate 200 --messages "$LIGHT_MESSAGES"
        fi
    done
    echo "round $i of $RUNS done" >&2
done

python3 - "$WORK" <<'EOF'
import json, statistics, sys, pathlib
work = pathlib.Path(sys.argv[1])

def rows(scenario):
    out = {"A": [], "B": []}
    for line in (work / f"{scenario}.jsonl").read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        out.setdefault(r.get("server"), []).append(r)
    return out

def cpu_us_per_delivery(r):
    if not r.get("deliveries"):
        return None
    return r["server_cpu_pct"] / 100 * r["duration_s"] / r["deliveries"] * 1e6

FIGURES = {
    "fanout": [("server CPU us/delivery", cpu_us_per_delivery),
               ("deliveries/s", lambda r: r.get("deliveries_per_s")),
               ("p99 us", lambda r: r.get("latency_p99_us"))],
    "light": [("server CPU us/delivery", cpu_us_per_delivery),
              ("p99 us", lambda r: r.get("latency_p99_us"))],
}
for scenario, figs in FIGURES.items():
    if not (work / f"{scenario}.jsonl").exists():
        continue
    runs = rows(scenario)
    bad = [r for side in "AB" for r in runs[side] if not r.get("ok")]
    print(f"{scenario} (median of {len(runs['A'])} A and {len(runs['B'])} B runs; {len(bad)} not ok)")
    for name, get in figs:
        med, spread = {}, {}
        for side in "AB":
            vals = [v for v in (get(r) for r in runs[side]) if isinstance(v, (int, float))]
            med[side] = statistics.median(vals) if vals else None
            spread[side] = f"{min(vals):.4g}-{max(vals):.4g}" if vals else ""
        if med["A"] is None or med["B"] is None:
            print(f"  {name}: not in the output")
            continue
        change = (med["B"] - med["A"]) / med["A"] * 100 if med["A"] else 0.0
        print(f"  {name}: A {med['A']:.4g} ({spread['A']})  B {med['B']:.4g} ({spread['B']})"
              f"  ({change:+.1f}%)")
EOF
