"""Structured log lines: `event=<name> key=value ...`, one event per line.

The formatter in settings adds `ts=... level=... logger=...` in front, so every line of
the game can be grepped and parsed the same way:

    ts=2025-01-01T12:00:00+0000 level=INFO logger=viruses.live.consumers event=ws.connect client=203.0.113.7

Never put message bodies (what a client sent) in a field: only sizes, types and codes.
"""

import logging
import re
from collections.abc import Callable

_BARE = re.compile(r"[A-Za-z0-9_.:/@+\-\[\]]+")

# Called with (event, fields) for every line built, whatever the log level: the metrics
# count events here (viruses/metrics.py), so the code that logs needs no second hook.
listeners: list[Callable[[str, dict], None]] = []


def kv(event: str, **fields) -> str:
    """Return `event=<event> key=value ...`; values with spaces or quotes are quoted."""
    for listener in listeners:
        listener(event, fields)
    parts = [f"event={event}"]
    for key, value in fields.items():
        parts.append(f"{key}={_value(value)}")
    return " ".join(parts)


def _value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        value = f"{value:.3f}"
    text = str(value)
    if text and _BARE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def parse(line: str) -> dict[str, str]:
    """Parse a key=value line back into a dict (for tests and log tooling)."""
    fields = {}
    for match in re.finditer(r'(\w[\w.]*)=("(?:[^"\\]|\\.)*"|\S*)', line):
        key, value = match.groups()
        if value.startswith('"'):
            value = re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value[1:-1])
        fields[key] = value
    return fields


class LayerDropFilter(logging.Filter):
    """Rewrite channels-redis's "N of M channels over capacity in group G" as a structured line.

    `group_send` never raises on a full channel: it drops the message for that channel and
    says so at INFO under `channels_redis.core`. Such a client misses a change and resyncs
    on the seq gap; many of these lines mean stuck consumers or an overloaded server.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "%s of %s channels over capacity in group %s" and len(record.args) == 3:
            dropped, channels, group = record.args
            record.msg = kv("layer.drop", dropped=dropped, channels=channels, group=group)
            record.args = ()
        return True
