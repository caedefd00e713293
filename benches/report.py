#!/usr/bin/env python3
"""Turns compare-peers.sh output (one huddle-load JSON object per line) into a Markdown table
and an SVG bar chart.

usage: report.py results.jsonl machine.txt OUT-DIR
"""

import json
import statistics
import sys
from pathlib import Path

SERVERS = ["huddle", "huddle-nohistory", "ngircd", "inspircd"]


def load(path):
    rows = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    for r in rows:
        # Server CPU per delivery: how much work the server does per line delivered,
        # whichever side (server or load tool) limited the throughput.
        cpu, rate = r.get("server_cpu_pct"), r.get("deliveries_per_s")
        if isinstance(cpu, (int, float)) and isinstance(rate, (int, float)) and rate > 0:
            r["server_us_per_delivery"] = round(cpu / 100 / rate * 1e6, 3)
    return rows


def pick(rows, server, scenario):
    return [r for r in rows if r.get("server") == server and r.get("scenario") == scenario]


def median_run(runs, key):
    """The run whose `key` is the median (lower median for an even count)."""
    good = [r for r in runs if isinstance(r.get(key), (int, float))]
    if not good:
        return runs[0] if runs else None
    good.sort(key=lambda r: r[key])
    return good[(len(good) - 1) // 2]


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and v >= 100:
        s = f"{v:,.0f}"
    elif isinstance(v, float) and v < 10:
        s = f"{v:.2f}"
    elif isinstance(v, float):
        s = f"{v:.1f}"
    else:
        s = f"{v:,}"
    return s + unit


# (label, scenario, key, unit, better: "high"/"low")
METRICS = [
    ("1 fan-out: deliveries/s (median run)", "fanout", "deliveries_per_s", "", "high"),
    ("1 fan-out: latency p50", "fanout", "latency_p50_us", " us", "low"),
    ("1 fan-out: latency p99", "fanout", "latency_p99_us", " us", "low"),
    ("1 fan-out: server CPU", "fanout", "server_cpu_pct", " %", None),
    ("1 fan-out: server CPU per delivery", "fanout", "server_us_per_delivery", " us", "low"),
    ("2 light: p50", "light", "latency_p50_us", " us", "low"),
    ("2 light: p99 (median run)", "light", "latency_p99_us", " us", "low"),
    ("2 light: p99.9", "light", "latency_p999_us", " us", "low"),
    ("2 light: max", "light", "latency_max_us", " us", "low"),
    ("3 crowd: deliveries/s", "crowd", "deliveries_per_s", "", "high"),
    ("3 crowd: p99", "crowd", "latency_p99_us", " us", "low"),
    ("3 crowd: server CPU per delivery", "crowd", "server_us_per_delivery", " us", "low"),
    ("4 idle: RSS per connection", "idle", "rss_per_connection_kib", " KiB", "low"),
    ("4 idle: connections held", "idle", "ready", "", None),
    ("4 idle: server fds", "idle", "server_fds_after", "", None),
    ("5 connect: handshakes/s", "connect", "handshakes_per_s", "", "high"),
    ("5 connect: p99 to first line", "connect", "connect_p99_us", " us", "low"),
    ("6 login: logins/s", "login", "logins_per_s", "", "high"),
    ("6 login: chat p99 during storm (median run)", "login", "storm_latency_p99_us", " us", "low"),
    ("6 login: auth", "login", "auth", "", None),
]


# Scenarios run several times, and the figure whose median run represents them (its other
# figures come from that same run).
REPEATED = {"fanout": "deliveries_per_s", "light": "latency_p99_us", "login": "storm_latency_p99_us"}


def representative(rows, server, scenario):
    runs = pick(rows, server, scenario)
    if scenario in REPEATED:
        return median_run(runs, REPEATED[scenario]), runs
    return (runs[-1] if runs else None), runs


def table(rows, servers):
    head = "| metric | " + " | ".join(servers) + " |"
    sep = "| --- | " + " | ".join("---:" for _ in servers) + " |"
    lines = [head, sep]
    for label, scenario, key, unit, _ in METRICS:
        cells = []
        for s in servers:
            rep, runs = representative(rows, s, scenario)
            v = rep.get(key) if rep else None
            cell = fmt(v, unit)
            if REPEATED.get(scenario) == key and len(runs) > 1:
                vals = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
                if vals:
                    cell += f" ({len(vals)} runs: {min(vals):,.0f}-{max(vals):,.0f})"
            if rep and key in ("deliveries_per_s", "handshakes_per_s") and rep.get("tool_saturated"):
                cell += " (tool-bound)"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    # Correctness row: lost/reordered/problems per server.
    cells = []
    for s in servers:
        runs = [r for r in rows if r.get("server") == s]
        bad = [r for r in runs if not r.get("ok", False)]
        lost = sum(r.get("lost", 0) or 0 for r in runs)
        reord = sum(r.get("reordered", 0) or 0 for r in runs)
        cell = f"lost {lost}, reordered {reord}"
        if bad:
            cell += f"; {len(bad)} run(s) with problems: " + ", ".join(
                sorted({r.get("scenario", "?") for r in bad})
            )
        cells.append(cell)
    lines.append("| all runs: correctness | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def floor_run(rows):
    """The median (by p99) of the `huddle-load floor` runs, and all of them."""
    runs = [r for r in rows if r.get("scenario") == "floor"]
    return median_run(runs, "latency_p99_us"), runs


def floor_text(rows):
    rep, runs = floor_run(rows)
    if not rep or not isinstance(rep.get("latency_p99_us"), (int, float)):
        return []
    p99s = [r["latency_p99_us"] for r in runs if isinstance(r.get("latency_p99_us"), (int, float))]
    spread = f"median of {len(p99s)} runs, one per light round: {min(p99s):,.0f}-{max(p99s):,.0f}"
    return [
        "Loopback floor of scenario 2 on this machine (`huddle-load floor`: the same 20 clients",
        "and 200 lines/s with no server at all; a relay thread copies each line to the 19 other",
        "sockets over plain TCP, so only the kernel's sends, wake-ups and reads remain):",
        f"p50 {rep['latency_p50_us']:,.0f} us, p99 {rep['latency_p99_us']:,.0f} us ({spread}),",
        f"p99.9 {rep['latency_p999_us']:,.0f} us. No server delivers faster than this here.",
        "",
    ]


def problems(rows):
    out = []
    for r in rows:
        for p in r.get("problems", []):
            if p.startswith("sender "):
                continue
            out.append(f"- {r.get('server')} / {r.get('scenario')}: {p}")
        for n in r.get("notes", []):
            out.append(f"- {r.get('server')} / {r.get('scenario')} (note): {n}")
    return out


def svg(rows, servers, path):
    panels = [
        ("fan-out deliveries/s", "fanout", "deliveries_per_s", "high"),
        ("crowd deliveries/s", "crowd", "deliveries_per_s", "high"),
        ("light p99 latency (us)", "light", "latency_p99_us", "low"),
        ("idle RSS per conn (KiB)", "idle", "rss_per_connection_kib", "low"),
        ("handshakes/s", "connect", "handshakes_per_s", "high"),
        ("chat p99 in login storm (us)", "login", "storm_latency_p99_us", "low"),
    ]
    colors = {"huddle": "#2b7bb9", "huddle-nohistory": "#8fc1e6", "ngircd": "#e08a2c", "inspircd": "#5a9e4b"}
    pw, ph, cols = 300, 220, 3
    rows_n = (len(panels) + cols - 1) // cols
    W, H = pw * cols, ph * rows_n + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
    ]
    x0 = 10
    for s in servers:
        parts.append(f'<rect x="{x0}" y="10" width="12" height="12" fill="{colors.get(s, "#888")}"/>')
        parts.append(f'<text x="{x0 + 16}" y="20">{s}</text>')
        x0 += 90
    for i, (title, scenario, key, better) in enumerate(panels):
        px, py = (i % cols) * pw, 40 + (i // cols) * ph
        vals = []
        for s in servers:
            rep, _ = representative(rows, s, scenario)
            v = rep.get(key) if rep else None
            vals.append(v if isinstance(v, (int, float)) else None)
        floor = None
        if scenario == "light":
            rep, _ = floor_run(rows)
            floor = rep.get(key) if rep else None
            floor = floor if isinstance(floor, (int, float)) else None
        top = max([v for v in vals + [floor] if v is not None] or [1]) or 1
        arrow = "higher is better" if better == "high" else "lower is better"
        parts.append(f'<text x="{px + 10}" y="{py + 14}" font-weight="bold">{title}</text>')
        parts.append(f'<text x="{px + 10}" y="{py + 28}" fill="#666">{arrow}</text>')
        base, area = py + ph - 30, ph - 80
        bw = (pw - 40) / max(1, len(servers))
        for j, (s, v) in enumerate(zip(servers, vals)):
            bx = px + 20 + j * bw
            if v is None:
                parts.append(f'<text x="{bx + 4}" y="{base - 4}" fill="#999">n/a</text>')
            else:
                h = max(1.0, area * v / top)
                parts.append(
                    f'<rect x="{bx + 4:.1f}" y="{base - h:.1f}" width="{bw - 8:.1f}" '
                    f'height="{h:.1f}" fill="{colors.get(s, "#888")}"/>'
                )
                label = f"{v:,.0f}" if v >= 10 else f"{v:.2f}"
                parts.append(f'<text x="{bx + 4:.1f}" y="{base - h - 3:.1f}">{label}</text>')
            parts.append(f'<text x="{bx + 4:.1f}" y="{base + 14}">{s}</text>')
        parts.append(
            f'<line x1="{px + 20}" y1="{base}" x2="{px + pw - 20}" y2="{base}" stroke="#333"/>'
        )
        if floor is not None:
            fy = base - max(1.0, area * floor / top)
            parts.append(
                f'<line x1="{px + 20}" y1="{fy:.1f}" x2="{px + pw - 20}" y2="{fy:.1f}" '
                f'stroke="#c00" stroke-dasharray="4 3"/>'
            )
            parts.append(
                f'<text x="{px + pw - 20}" y="{fy - 3:.1f}" fill="#c00" text-anchor="end">'
                f"loopback floor {floor:,.0f}</text>"
            )
    parts.append("</svg>")
    Path(path).write_text("\n".join(parts) + "\n")


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    rows = load(sys.argv[1])
    machine = Path(sys.argv[2]).read_text().strip() if Path(sys.argv[2]).exists() else ""
    out = Path(sys.argv[3])
    servers = [s for s in SERVERS if any(r.get("server") == s for r in rows)]
    svg(rows, servers, out / "comparison.svg")
    tls = {s: (representative(rows, s, "fanout")[0] or {}).get("tls") for s in servers}
    md = [
        "# Huddle vs ngIRCd vs InspIRCd",
        "",
        "Generated by `scripts/compare-peers.sh` (huddle-load; every server restarted per scenario,",
        "all on 127.0.0.1 over TLS; the load tool runs on the same machine).",
        "",
        "```",
        machine,
        "```",
        "",
        table(rows, servers),
        "",
        "TLS suites negotiated: " + ", ".join(f"{s}: {tls[s]}" for s in servers),
        "",
        *floor_text(rows),
        "Huddle logs in with SASL PLAIN (argon2id) in fanout, light and login; crowd, idle and",
        "connect use guests (NICK/USER). ngIRCd and InspIRCd have no accounts: NICK/USER",
        "everywhere, so their login storm is a registration storm without password checks.",
        "`huddle` is Huddle as shipped: every room message is also stored in sled (room",
        "history, `--history 200`). `huddle-nohistory` is the same binary with `--history 0`,",
        "like the peers, which keep no message history; it runs the chat scenarios only.",
        "Huddle's flood control and per-address limits are off for the bench",
        "(`--flood-rate 0 --max-per-ip 0 --connects-per-minute 0`), as the peers' are.",
        "A value marked (tool-bound) means the load tool's busiest thread was above 90% of a",
        "core: the figure is then the tool's limit, not the server's.",
        "",
        "![comparison](comparison.svg)",
        "",
        "Reproduce (as root for the package install; about 15 minutes on 2 cores):",
        "",
        "```sh",
        "scripts/compare-peers.sh                 # writes benches/results/",
        "QUICK=1 scripts/compare-peers.sh         # tiny sizes, checks the plumbing",
        "cargo run --release -p huddle-benches --bin huddle-load -- --help",
        "cargo bench -p huddle-benches            # criterion: protocol, fanout, argon2",
        "```",
        "",
        "Raw per-run JSON (one object per scenario run): `results.jsonl`.",
        "",
    ]
    probs = problems(rows)
    if probs:
        md += ["## Problems and notes", ""] + probs + [""]
    (out / "results.md").write_text("\n".join(md))
    print((out / "results.md").read_text())


if __name__ == "__main__":
    main()
