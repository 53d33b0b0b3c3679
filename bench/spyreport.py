"""Fold py-spy's collapsed stacks (`bench.writepath --spy`) into where an action's CPU goes.

    python -m bench.spyreport FOLDER/socket.txt [--ms 2.27]

Each busy sample (idle waits dropped: epoll, a thread pool's empty queue, lock waits) is
given to the first part below whose frame is on its stack; with `--ms` (daphne's CPU per
action, measured without py-spy) each share is also printed in milliseconds.
"""

import argparse
import re
from collections import Counter

# (part, frame name as py-spy prints it); the first whose frame is on the stack takes the sample.
PARTS = [
    (
        "database: the service (create / kill)",
        ("virus_create (viruses/services", "virus_kill (viruses/services"),
    ),
    ("rate-limit token (Redis)", ("retry_after (viruses/guards/ratelimit",)),
    ("idempotency key: claim and settle (Redis)", ("aonce (", "once (viruses/guards/idempotency")),
    ("fan-out: frame and write to every socket", ("Fanout.deliver",)),
    ("push: group_send (Redis)", ("LocalFanoutRedisChannelLayer.group_send",)),
    ("layer reader: pop the group message (Redis)", ("LocalFanoutRedisChannelLayer._read",)),
    ("Django: request, middleware, view, answer", ("BaseHandler.get_response", "ASGIHandler")),
    ("consumer: decode, ack, metrics, log", ("VirusConsumer.receive",)),
    ("thread hops (asgiref, executor)", ("asgiref/sync.py", "futures/thread.py")),
    (
        "daphne / Twisted / autobahn: socket reads and writes, HTTP parsing",
        ("_readOrWrite", "daphne/http_protocol", "daphne/ws_protocol"),
    ),
]
IDLE = ("EpollSelector.select", "SimpleQueue", "_worker (concurrent", "Condition.wait", "lock.acquire")


def parts(path: str) -> tuple[Counter, int]:
    shares: Counter = Counter()
    busy = 0
    with open(path) as lines:
        samples = [line.rstrip().rsplit(" ", 1) for line in lines]
    for stack, count in samples:
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")[1:]]
        if not frames or any(mark in frames[-1] for mark in IDLE):
            continue
        busy += int(count)
        joined = ";".join(frames)
        part = next(
            (name for name, marks in PARTS if any(m in joined for m in marks)), "other (event loop, asyncio)"
        )
        shares[part] += int(count)
    return shares, busy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stacks")
    parser.add_argument("--ms", type=float, help="daphne CPU per action, to print each part in ms")
    args = parser.parse_args()
    shares, busy = parts(args.stacks)
    print(f"{busy} busy samples")
    for name, count in shares.most_common():
        ms = f"  {args.ms * count / busy:5.2f} ms" if args.ms else ""
        print(f"  {100 * count / busy:5.1f} %{ms}  {name}")


if __name__ == "__main__":
    main()
