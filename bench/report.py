"""The terminal table (every project figure with its ratio to each baseline) and the plot."""

import math
from pathlib import Path


def _get(result: dict | None, *path):
    value = result
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def rows(results: dict) -> list[dict]:
    """Every figure: label, value per server, target text and whether the project meets it."""
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

    floor_p99_1000 = _get(floor, "latency", "1000", "p99_ms")
    for n in levels:
        key = str(n)
        target = check = None
        if n == 1000:
            target = "<=150 ms, <=4x floor"

            def check(v, f=floor_p99_1000):
                return v <= 150 and (f is None or v <= 4 * f)

        elif n == 3000:
            target = "<=600 ms"

            def check(v):
                return v <= 600

        add(f"fan-out p50, N={n} (ms)", ("latency", key, "p50_ms"))
        add(f"fan-out p99, N={n} (ms)", ("latency", key, "p99_ms"), target=target or "", check=check)
        add(
            f"deliveries lost, N={n}",
            ("latency", key, "lost"),
            target="0" if n == 3000 else "",
            check=(lambda v: v == 0) if n == 3000 else None,
        )
    storm_n = _get(project or next(iter(servers.values()), None), "storm", "requested")
    add(f"storm: {storm_n} connects, seconds", ("storm", "seconds"))
    add("storm: handshake p99 (ms)", ("storm", "handshake_p99_ms"))
    add("storm: refused handshakes", ("storm", "refused"), target="0", check=lambda v: v == 0)
    add("refused handshakes, all", ("refused_total",))
    add(
        "sustained deliveries/s",
        ("sustained", "deliveries_per_s"),
        target=">=10,000",
        check=lambda v: v >= 10_000,
        better="higher",
    )
    add("burst: changes written in (s)", ("burst", "write_seconds"))
    add("burst: converged after (s)", ("burst", "converged_s"))
    add("burst: deliveries dropped (%)", ("burst", "dropped_pct"))
    add("burst: resyncs", ("burst", "resyncs"))
    add("burst: clients lost for good", ("burst", "lost_for_good"), target="0", check=lambda v: v == 0)
    add(
        "memory per 1000 idle clients (MB)",
        ("memory", "mb_per_1000"),
        target="<=35 MB",
        check=lambda v: v <= 35,
    )
    add("list endpoint (requests/s)", ("list_rps",), better="higher")
    for row in out:
        p = row["values"].get("project")
        for base in ("floor", "stock"):
            b = row["values"].get(base)
            ok = isinstance(p, int | float) and isinstance(b, int | float) and b
            row[f"x_{base}"] = p / b if ok else None
    return out


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
    names = [n for n in ("project", "floor", "stock") if n in results["servers"]]
    header = ["figure", *names, "/floor", "/stock", "target", "met"]
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
        f"{results['cpus']} CPUs, project = {results['project_settings']})"
    )
    legend = "ratios are project / baseline; ^ = higher is better, otherwise lower is better"
    noisy = {n: r.get("other_cpu_cores") for n, r in results["servers"].items()}
    noisy = {n: cores for n, cores in noisy.items() if (cores or 0) > 0.3}
    if noisy:
        legend += f"\nWARNING: other processes used CPU meanwhile (cores: {noisy}); figures are pessimistic"
    return "\n".join([title, rule, render(header), rule, *(render(c) for c in lines), rule, legend])


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    colours = {"project": "tab:blue", "floor": "tab:green", "stock": "tab:red"}
    for name, result in results["servers"].items():
        latency = result.get("latency") or {}
        ns = sorted(int(n) for n in latency)
        for stat, style in (("p99_ms", "-"), ("p50_ms", "--")):
            points = [(n, latency[str(n)][stat]) for n in ns if latency[str(n)][stat] is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, marker="o", color=colours.get(name), label=f"{name} {stat[:3]}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("connected clients (N)")
    ax.set_ylabel("fan-out completion (ms, change -> last client)")
    ax.set_title(f"Fan-out latency vs N ({results['profile']} run, one daphne process)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
