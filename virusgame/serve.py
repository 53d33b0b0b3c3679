"""Run one daphne process per core on one port, without a proxy in front (`make serve`, Procfile).

A daphne process is one Python process: it uses one core. This supervisor binds the port
itself and hands each daphne child a listening socket with `daphne --fd`:

- `reuseport` (the default where the system has it): one socket per child, all bound to the
  same address with SO_REUSEPORT, so the kernel spreads new connections evenly over the
  children, whatever each is busy with. Long-lived WebSockets stay where they land, so an
  even spread matters more here than with short requests. The supervisor keeps every socket
  open: connections that arrive while a child restarts wait in its queue instead of being
  reset, and the port is never released.
- `shared`: one socket for all children; whichever child accepts first takes the
  connection. Works everywhere, but a child that wakes first can take a whole burst.

A child that exits is started again after a pause; if children keep dying within seconds
of their start (a configuration error), the supervisor gives up with status 1. SIGTERM or
SIGINT stops every child (daphne closes its sockets; clients reconnect and resync) and exits.

    python -m virusgame.serve --processes 0 -b 127.0.0.1 -p 8000 [daphne options] virusgame.asgi:application

Behind nginx with systemd, the deploy kit runs one unit instance per core on its own unix
socket instead (docs/production.md explains why).
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

RESTART_PAUSE = 1.0  # s before a child that exited is started again
QUICK_DEATH = 5.0  # s: a child that dies sooner after its start counts as failing to start
QUICK_DEATHS_ALLOWED = 3  # in a row, before the supervisor gives up
STOP_TIMEOUT = 20.0  # s for the children to stop after SIGTERM (systemd's TimeoutStopSec)


def cores() -> int:
    """The cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def listening_sockets(host: str, port: int, count: int, share: str) -> list[socket.socket]:
    """`count` listening sockets on host:port (one socket `count` times when `share` is "shared")."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]

    def bind() -> socket.socket:
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if share == "reuseport":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(socket.SOMAXCONN)
        sock.set_inheritable(True)
        return sock

    if share == "shared":
        return [bind()] * count
    return [bind() for _ in range(count)]


class Supervisor:
    def __init__(self, sockets: list[socket.socket], daphne_args: list[str]):
        self.sockets = sockets
        self.daphne_args = daphne_args
        self.children: list[subprocess.Popen | None] = [None] * len(sockets)
        self.started: list[float] = [0.0] * len(sockets)
        self.quick_deaths = 0
        self.stopping = False

    def start(self, index: int) -> None:
        fd = self.sockets[index].fileno()
        argv = [sys.executable, "-m", "daphne", "--fd", str(fd), *self.daphne_args]
        self.children[index] = subprocess.Popen(argv, pass_fds=(fd,))
        self.started[index] = time.monotonic()
        log(f"started daphne pid={self.children[index].pid} process={index + 1}/{len(self.sockets)} fd={fd}")

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.stop)
        for index in range(len(self.children)):
            self.start(index)
        while not self.stopping:
            time.sleep(0.2)
            for index, child in enumerate(self.children):
                if self.stopping or child is None or child.poll() is None:
                    continue
                log(f"daphne pid={child.pid} exited with {child.returncode}")
                if time.monotonic() - self.started[index] < QUICK_DEATH:
                    self.quick_deaths += 1
                    if self.quick_deaths >= QUICK_DEATHS_ALLOWED:
                        log("daphne keeps exiting right after its start: giving up")
                        self.stop()
                        return 1
                else:
                    self.quick_deaths = 0
                time.sleep(RESTART_PAUSE)
                if not self.stopping:
                    self.start(index)
        return 0

    def stop(self, *_) -> None:
        """Stop every child (SIGTERM, then SIGKILL after STOP_TIMEOUT)."""
        if self.stopping:
            return
        self.stopping = True
        live = [c for c in self.children if c is not None and c.poll() is None]
        for child in live:
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in live:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def log(message: str) -> None:
    print(f"virusgame.serve: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m virusgame.serve",
        description=__doc__.split("\n\n")[0],
        epilog="Every other option, and the application, go to each daphne unchanged.",
    )
    parser.add_argument("--processes", type=int, default=0, help="daphne processes (0: one per core)")
    parser.add_argument("-b", "--bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument("-p", "--port", type=int, default=8000)
    has_reuseport = hasattr(socket, "SO_REUSEPORT")
    parser.add_argument(
        "--share",
        choices=["reuseport", "shared"],
        default="reuseport" if has_reuseport else "shared",
        help="one SO_REUSEPORT socket per process (default), or one socket for all",
    )
    args, daphne_args = parser.parse_known_args(argv)
    count = args.processes or cores()
    sockets = listening_sockets(args.bind, args.port, count, args.share)
    log(f"{count} daphne processes on {args.bind}:{args.port} ({args.share})")
    return Supervisor(sockets, daphne_args).run()


if __name__ == "__main__":
    sys.exit(main())
