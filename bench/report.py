"""The terminal table (every project figure with its ratio to each baseline) and the plot."""

import math
from pathlib import Path

# The columns, in order: the project (daphne), its peers (the same application under the other
# ASGI servers, tools/servers.py's PEERS), then the two baselines.
PEERS = ("uvicorn", "granian")
SERVERS = ("project", *PEERS, "floor", "stock")
COLOURS = {"project": "tab:blue", "uvicorn": "tab:purple", "granian": "tab:orange"}
COLOURS |= {"floor": "tab:green", "stock": "tab:red"}


def _get(result: dict | None, *path):
    value = result
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def rows(results: dict) -> list[dict]:
    """Every figure: label, value per server, target text and whether the project meets it.

    The targets are absolute ones and ratios to the floor in the same run (docs/performance.md#targets).
    """
    servers = results["servers"]
    project = servers.get("project")
    floor = servers.get("floor")
    levels = sorted({int(n) for s in servers.values() for n in (s.get("latency") or {})})
    out = []

    def add(label, path, *, target="", check=None, better="lower"):
        values = {name: _get(result, *path) for name, result in servers.items()}
        met = None
        if check is not None and project is not None and values.get("project") is not None:
            met = check(values["project"])
        out.append({"label": label, "values": values, "target": target, "met": met, "better": better})

    def floor_ratio(path, limit, higher=False):
        """A check against `limit` times the floor's figure in this run (the relative targets)."""
        base = _get(floor, *path)

        def check(v):
            return base is None or (v >= limit * base if higher else v <= limit * base)

        return check

    def both(*checks):
        return lambda v: all(check(v) for check in checks)

    for n in levels:
        key = str(n)
        p50_target = p99_target = ""
        p50_check = p99_check = None
        if n == 1000:
            p50_target, p50_check = "<=2x floor", floor_ratio(("latency", key, "p50_ms"), 2)
            p99_target = "<=150 ms, <=4x floor"
            p99_check = both(lambda v: v <= 150, floor_ratio(("latency", key, "p99_ms"), 4))
        elif n == 3000:
            p99_target = "<=600 ms, <=3x floor"
            p99_check = both(lambda v: v <= 600, floor_ratio(("latency", key, "p99_ms"), 3))
        add(f"fan-out p50, N={n} (ms)", ("latency", key, "p50_ms"), target=p50_target, check=p50_check)
        add(f"fan-out p99, N={n} (ms)", ("latency", key, "p99_ms"), target=p99_target, check=p99_check)
        add(
            f"deliveries lost, N={n}",
            ("latency", key, "lost"),
            target="0" if n == 3000 else "",
            check=(lambda v: v == 0) if n == 3000 else None,
        )
    storm_n = _get(project or next(iter(servers.values()), None), "storm", "requested")
    add(
        f"storm: {storm_n} connects, seconds",
        ("storm", "seconds"),
        target="<=2x floor",
        check=floor_ratio(("storm", "seconds"), 2),
    )
    add("storm: handshake p99 (ms)", ("storm", "handshake_p99_ms"))
    add("storm: refused handshakes", ("storm", "refused"), target="0", check=lambda v: v == 0)
    add("refused handshakes, all", ("refused_total",))
    add(
        "sustained deliveries/s",
        ("sustained", "deliveries_per_s"),
        target=">=10,000, >=0.8x floor",
        check=both(lambda v: v >= 10_000, floor_ratio(("sustained", "deliveries_per_s"), 0.8, higher=True)),
        better="higher",
    )
    add("burst: changes written in (s)", ("burst", "write_seconds"))
    add(
        "burst: converged after (s)",
        ("burst", "converged_s"),
        target="<=3x floor",
        check=floor_ratio(("burst", "converged_s"), 3),
    )
    add("burst: deliveries dropped (%)", ("burst", "dropped_pct"))
    add("burst: resyncs", ("burst", "resyncs"))
    add("burst: clients lost for good", ("burst", "lost_for_good"), target="0", check=lambda v: v == 0)
    add(
        "memory per 1000 idle clients (MB)",
        ("memory", "mb_per_1000"),
        target="<=25 MB",
        check=lambda v: v <= 25,
    )
    add("list endpoint (requests/s)", ("list_rps",), better="higher")
    for row in out:
        p = row["values"].get("project")
        for base in ("floor", "stock"):
            b = row["values"].get(base)
            ok = isinstance(p, int | float) and isinstance(b, int | float) and b
            row[f"x_{base}"] = p / b if ok else None
        row["peers_ahead"] = peers_ahead(row["values"], row["better"])
    return out


def peers_ahead(values: dict, better: str = "lower") -> str:
    """The peers whose figure beats the project's ("-": none; "" when there is nothing to compare)."""
    p = values.get("project")
    peers = {n: values.get(n) for n in PEERS if isinstance(values.get(n), int | float)}
    if not isinstance(p, int | float) or not peers:
        return ""
    ahead = [n for n, v in peers.items() if (v > p if better == "higher" else v < p)]
    return ", ".join(ahead) or "-"


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table(results: dict) -> str:
    names = [n for n in SERVERS if n in results["servers"]]
    header = ["figure", *names, "/floor", "/stock", "peers ahead", "target", "met"]
    lines = []
    for row in rows(results):
        met = "" if row["met"] is None else ("MET" if row["met"] else "MISSED")
        label = row["label"] + (" ^" if row["better"] == "higher" else "")
        lines.append(
            [
                label,
                *(_fmt(row["values"].get(n)) for n in names),
                _ratio(row["x_floor"]),
                _ratio(row["x_stock"]),
                row["peers_ahead"],
                row["target"],
                met,
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=True)]

    def render(cells):
        first = cells[0].ljust(widths[0])
        rest = [str(c).rjust(w) for c, w in zip(cells[1:-2], widths[1:-2], strict=True)]
        return "  ".join([first, *rest, str(cells[-2]).ljust(widths[-2]), cells[-1]]).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    title = (
        f"virusgame fan-out benchmark ({results['profile']}, {results['database']}, "
        f"{results['cpus']} CPUs, project = {results['project_settings']}{_layout(results)})"
    )
    legend = "ratios are project / baseline; ^ = higher is better, otherwise lower is better"
    legend += "; peers ahead: the other ASGI servers whose figure beats the project's (daphne)"
    legend += _skipped(results)
    noisy = {n: r.get("other_cpu_cores") for n, r in results["servers"].items()}
    noisy = {n: cores for n, cores in noisy.items() if (cores or 0) > 0.3}
    if noisy:
        legend += f"\nWARNING: other processes used CPU meanwhile (cores: {noisy}); figures are pessimistic"
    return "\n".join([title, rule, render(header), rule, *(render(c) for c in lines), rule, legend])


def _skipped(results: dict) -> str:
    return "".join(f"\n{name}: skipped: {why}" for name, why in (results.get("skipped") or {}).items())


def _layout(results: dict) -> str:
    n = results.get("project_processes", 1)
    return "" if n == 1 else f", {n} daphne processes on one port"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, result in results["servers"].items():
        latency = result.get("latency") or {}
        ns = sorted(int(n) for n in latency)
        for stat, style in (("p99_ms", "-"), ("p50_ms", "--")):
            points = [(n, latency[str(n)][stat]) for n in ns if latency[str(n)][stat] is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, marker="o", color=COLOURS.get(name), label=f"{name} {stat[:3]}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("connected clients (N)")
    ax.set_ylabel("fan-out completion (ms, change -> last client)")
    processes = results.get("project_processes", 1)
    layout = "one daphne process" if processes == 1 else f"project: {processes} daphne processes"
    ax.set_title(f"Fan-out latency vs N ({results['profile']} run, {layout})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- the game load (bench/gameload.py) ------------------------------------------------------

# The game-load targets (docs/performance.md#targets), one daphne process on SQLite: players ->
# {path: actions/s}; the acting player's own answer p99 must stay within OWN_P99_TARGET at that
# rate. PostgreSQL: half.
GAMELOAD_TARGETS = {
    100: {"socket": 200, "http": 100},
    300: {"socket": 300, "http": 100},
    1000: {"socket": 100, "http": 50},
}
OWN_P99_TARGET = 100.0  # ms
# The benchmark's client is one Python process: past this many cores it, not the server,
# is what a step measures.
CLIENT_CORES = 0.9


def gameload_target(results: dict, players: int, path: str) -> float | None:
    target = GAMELOAD_TARGETS.get(players, {}).get(path)
    if target is None:
        return None
    return target / 2 if results.get("database") == "postgresql" else target


def gameload_rows(results: dict) -> list[dict]:
    """One row per (P, path): capacity of each server, the project's figures and verdict."""
    servers = {name: r.get("gameload") for name, r in results["servers"].items() if r.get("gameload")}
    levels = sorted({int(p) for g in servers.values() for p in g["levels"]})
    out = []
    for players in levels:
        for path in ("socket", "http"):
            values = {}
            for name, load in servers.items():
                level = load["levels"].get(str(players), {})
                found = level.get(path)
                values[name] = "n/a" if found is None or found.get("capacity") is None else found["capacity"]
            project = (servers.get("project") or {}).get("levels", {}).get(str(players), {}).get(path) or {}
            held = project.get("at_capacity") or {}
            target = gameload_target(results, players, path)
            met = None
            if target is not None and project.get("capacity") is not None:
                at_target = next(
                    (s for s in project["steps"] if s["rate"] == target and not s["failed"]), None
                )
                own = at_target and at_target["own_p99_ms"]
                met = project["capacity"] >= target and own is not None and own <= OWN_P99_TARGET
            client = client_cores_needed(project.get("steps", []), players, target) if met is False else None
            why = project.get("next_step") or project.get("n/a")
            if client is not None and client > CLIENT_CORES:
                why = f"client-bound: the target needs ~{client:.1f} client cores; {why}"
            out.append(
                {
                    "players": players,
                    "path": path,
                    "values": values,
                    "deliveries": project.get("deliveries_per_s"),
                    "own": (held.get("own_p50_ms"), held.get("own_p99_ms")),
                    "target": target,
                    "met": met,
                    "next": why,
                }
            )
    return out


def client_cores_needed(steps: list[dict], players: int, rate: float) -> float | None:
    """Cores the benchmark client would use at `rate`, at its CPU per delivery in the steps that held."""
    held = [s for s in steps if not s.get("failed") and s.get("client_cpu")]
    if not held:
        return None
    per_delivery = max(s["client_cpu"] / (s["rate"] * players) for s in held)
    return rate * players * per_delivery


def gameload_table(results: dict) -> str:
    names = [n for n in SERVERS if (results["servers"].get(n) or {}).get("gameload")]
    if not names:
        return ""
    header = ["P", "path", *names, "deliv/s", "own p50/p99 ms", "peers ahead", "target", "met"]
    header.append("project: next step / why")
    lines = []
    for row in gameload_rows(results):
        own = "/".join(_fmt(v) for v in row["own"]) if row["own"][0] is not None else "-"
        target = f">={row['target']:g}/s, own p99<={OWN_P99_TARGET:g}" if row["target"] else "-"
        met = "" if row["met"] is None else ("MET" if row["met"] else "MISSED")
        lines.append(
            [
                str(row["players"]),
                row["path"],
                *(_fmt(row["values"].get(n)) for n in names),
                _fmt(row["deliveries"]),
                own,
                peers_ahead(row["values"], "higher"),
                target,
                met,
                str(row["next"] or "")[:90],
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=True)]

    def render(cells):
        return "  ".join(
            str(c).rjust(w) if 2 <= i < 2 + len(names) + 2 else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    title = (
        f"game load: capacity in actions/s at P players ({results['profile']}, {results['database']}"
        f"{_layout(results)}; "
        "a step holds with every action answered 2xx, every change to every player, p99 send -> last "
        "player <= 250 ms, actions on schedule)"
    )
    noisy = {n: results["servers"][n]["gameload"].get("other_cpu_cores") for n in names}
    noisy = {n: c for n, c in noisy.items() if (c or 0) > 0.3}
    legend = "deliv/s and own answer (HTTP response or ack) are the project's, at its capacity"
    legend += "; peers ahead: the other ASGI servers whose capacity beats the project's (daphne)"
    legend += _skipped(results)
    if noisy:
        legend += f"\nWARNING: other processes used CPU meanwhile (cores: {noisy}); figures are pessimistic"
    return "\n".join([title, rule, render(header), rule, *(render(c) for c in lines), rule, legend])


def gameload_plot(results: dict, path: Path) -> bool:
    """Capacity against P for each server and path; False when there is nothing to plot."""
    rows = gameload_rows(results)
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name in results["servers"]:
        for action_path, style, mark in (("socket", "-", "o"), ("http", "--", "s")):
            points = [
                (r["players"], max(1, r["values"][name]))
                for r in rows
                if r["path"] == action_path and isinstance(r["values"].get(name), int | float)
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                label = f"{name}, {action_path}"
                ax.plot(xs, ys, style, marker=mark, color=COLOURS.get(name), label=label, alpha=0.8)
    targets = [(r["players"], r["target"], r["path"]) for r in rows if r["target"]]
    for action_path, marker in (("socket", "^"), ("http", "v")):
        points = [(p, t) for p, t, a in targets if a == action_path]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.scatter(xs, ys, marker=marker, color="black", label=f"target, {action_path}", zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("players watching (P)")
    ax.set_ylabel("capacity (actions/s that held; 0 drawn as 1)")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    processes = results.get("project_processes", 1)
    layout = "one daphne process" if processes == 1 else f"project: {processes} daphne processes"
    ax.set_title(f"Game load: capacity vs P ({results['profile']} run, {layout})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


# -- the abuse phase (bench/abuse.py) ---------------------------------------------------------

ABUSE_RATIO_TARGET = 2.0  # one abuser may not raise another client's latency more than 2x
ABUSE_RSS_TARGET = 10.0  # MB: "the server's memory by more than a few MB"


def abuse_table(results: dict) -> str:
    a = results["servers"]["project"]["abuse"]
    calm, bare, paced = a["without"], a["with"], a.get("with_nginx_pacing") or {}
    lines = [
        f"abuse: one daphne process, {a['players']} players each from its own address, one ping "
        "abuser (20 sockets from one address, reconnecting): bare = every handshake reaches daphne, "
        "nginx = handshakes paced at the deploy kit's limit_req (5/s, burst 30)",
        f"{'figure':24} {'without':>9} {'bare':>9} {'ratio':>7} {'nginx':>9} {'ratio':>7}  target",
    ]

    def verdict(ratio):
        return "" if ratio is None else ("MET" if ratio <= ABUSE_RATIO_TARGET else "MISSED")

    for label, key in (
        ("fan-out p50 (ms)", "fanout_p50_ms"),
        ("fan-out p99 (ms)", "fanout_p99_ms"),
        ("/healthz p50 (ms)", "healthz_p50_ms"),
        ("/healthz p99 (ms)", "healthz_p99_ms"),
    ):
        x_bare, x_paced = a.get(f"x_{key}"), a.get(f"x_nginx_{key}")
        lines.append(
            f"{label:24} {_fmt(calm[key]):>9} {_fmt(bare[key]):>9} {_ratio(x_bare):>7} "
            f"{_fmt(paced.get(key)):>9} {_ratio(x_paced):>7}  <={ABUSE_RATIO_TARGET:g}x: "
            f"bare {verdict(x_bare)}, nginx {verdict(x_paced)}"
        )
    lines.append(
        f"{'deliveries lost':24} {calm['lost']:>9} {bare['lost']:>9} {'':>7} {_fmt(paced.get('lost')):>9}"
    )
    lines.append(
        f"{'/healthz failed':24} {calm['healthz_failed']:>9} {bare['healthz_failed']:>9} {'':>7} "
        f"{_fmt(paced.get('healthz_failed')):>9}"
    )
    growth = a["rss_growth_peak_mb"]
    met = "MET" if growth <= ABUSE_RSS_TARGET else "MISSED"
    # What play alone grew it by, before any abuser: the rest is the abuser's.
    calm_growth = _fmt(round(calm["rss_peak_mb"] - a["rss_before_mb"], 1))
    lines.append(
        f"{'server RSS growth (MB)':24} {'':>9} {_fmt(growth):>9}  at the peak of either; "
        f"<={ABUSE_RSS_TARGET:g} MB {met} (from {a['rss_before_mb']} MB; "
        f"{a['rss_growth_after_mb']} MB after; {calm_growth} MB in the window without)"
    )
    for name, window in (("bare", bare), ("nginx", paced)):
        if window.get("attacker"):
            lines.append(f"attacker, {name}: {window['attacker']}")
    if (a.get("other_cpu_cores") or 0) > 0.3:
        lines.append(f"other processes (the attacker included) used {a['other_cpu_cores']} cores meanwhile")
    rule = "-" * max(len(line) for line in lines[1:])
    return "\n".join([lines[0], rule, lines[1], rule, *lines[2:], rule])


ROOMS_TARGET = 200  # actions/s in total on one daphne process (issue 23)


def rooms_table(results: dict) -> str:
    """The many-rooms capacity beside one room of the same players (the game load's largest P)."""
    project = results["servers"]["project"]
    r = project["rooms"]
    levels = (project.get("gameload") or {}).get("levels", {})
    one = levels.get(str(max((int(p) for p in levels), default=0))) or {}
    held = r.get("at_capacity") or {}
    met = "MET" if r["capacity"] >= ROOMS_TARGET else "MISSED"
    shape = f"{r['rooms']} rooms of {r['size']}"
    lines = [
        f"many rooms: one daphne process, {r['rooms']} rooms of {r['size']} players, every room active, "
        "actions over the socket (the game load's rule: p99 send -> last player of the room <= 250 ms)",
        f"{'shape':30} {'players':>8} {'actions/s':>10} {'deliveries/s':>13} {'p99 ms':>8}  next step",
        f"{shape:30} {r['players']:>8} {r['capacity']:>10g} "
        f"{r['deliveries_per_s']:>13,} {_fmt(held.get('p99_ms')):>8}  {r['next_step']}",
    ]
    if (socket := one.get("socket")) and socket.get("capacity") is not None:
        at = socket.get("at_capacity") or {}
        lines.append(
            f"{'one room (the game load)':30} {one['players']:>8} {socket['capacity']:>10g} "
            f"{socket['deliveries_per_s']:>13,} {_fmt(at.get('p99_ms')):>8}  {socket['next_step']}"
        )
    lines.append(f"target >= {ROOMS_TARGET} actions/s in total: {met}")
    for where, locks in (r.get("locks") or {}).items():
        lines.append(
            f"waiting locks, {where.replace('_', ' ')} at {locks['rate']:g} actions/s: "
            f"{locks['samples_with_waiters_pct']} % of {locks['samples']} samples with a waiter, "
            f"mean {locks['mean_waiting']} waiting"
        )
    if (r.get("other_cpu_cores") or 0) > 0.3:
        lines.append(f"WARNING: other processes used {r['other_cpu_cores']} cores meanwhile")
    rule = "-" * max(len(line) for line in lines[1:])
    return "\n".join([lines[0], rule, lines[1], rule, *lines[2:], rule])
