"""`make run`: a local Redis, migrations, the development server and the spawner, together.

One Ctrl-C stops all of them. Only one `make run` per checkout: a second one refuses
before touching anything (a lock file under `.run/`, then a port check).

`make spawn ARGS=...` (`python -m tools.dev spawn ...`) runs `manage.py spawn_virus` against
the running `make run`: same settings, same Redis.
"""

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tools.local_redis import LocalRedis

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def run_dir() -> Path:
    # DEV_RUN_DIR: for tests, which must not meet a developer's own `make run`.
    return Path(os.environ.get("DEV_RUN_DIR") or ROOT / ".run").resolve()


def main() -> int:
    env = {**os.environ, "DJANGO_DEBUG": os.environ.get("DJANGO_DEBUG", "1")}
    address = env.get("ADDRESS", "127.0.0.1:8000")
    directory = run_dir()
    directory.mkdir(parents=True, exist_ok=True)
    lock = open(directory / "dev.lock", "a+")  # noqa: SIM115 (held until this process ends)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        first = read_state(lock)
        return refuse(
            f"make run is already running (pid {first.get('pid')}, http://{first.get('address')}/). "
            "Use that one, stop it with Ctrl-C, or add viruses with `make spawn`."
        )
    if in_use(address):
        return refuse(
            f"{address} is already in use by another program; pick another: make run ADDRESS=host:port"
        )
    local_redis = None
    if not env.get("REDIS_URL"):
        local_redis = LocalRedis(directory).start()
        env["REDIS_URL"] = local_redis.url
        print(f"Local Redis at {local_redis.url}", flush=True)
    write_state(lock, {"pid": os.getpid(), "address": address, "env": game_env(env)})
    children = []
    # A SIGTERM (a service manager, `kill`) stops everything too, as Ctrl-C does: through the
    # `finally` below, which the default SIGTERM would skip, leaving the children running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        subprocess.run([PYTHON, "manage.py", "migrate", "--no-input"], cwd=ROOT, env=env, check=True)
        children.append(subprocess.Popen([PYTHON, "manage.py", "runserver", address], cwd=ROOT, env=env))
        children.append(
            subprocess.Popen(
                [
                    PYTHON,
                    "manage.py",
                    "spawn_virus",
                    "--count",
                    "3",
                    "--spread",
                    "60",
                    "--every",
                    "60",
                    "--all-rooms",
                ],
                cwd=ROOT,
                env=env,
            )
        )
        print(f"\nPlay at http://{address}/  (admin: /admin/, Ctrl-C stops everything)\n", flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        return next(child.returncode for child in children if child.returncode is not None)
    except KeyboardInterrupt:
        # The terminal's Ctrl-C reached the children too (one process group): let them
        # finish, deaf to a repeated Ctrl-C meanwhile.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(5)
        return 0
    except subprocess.CalledProcessError as exc:
        return exc.returncode
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                child.kill()
        if local_redis:
            local_redis.stop()
        write_state(lock, {})
        lock.close()


def spawn(args: list[str]) -> int:
    """Run `manage.py spawn_virus ARGS` with the running `make run`'s settings and Redis."""
    path = run_dir() / "dev.lock"
    with open(path if path.exists() else os.devnull) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held by a running `make run`
            env = {**os.environ, **read_state(lock).get("env", {})}
            spawner = subprocess.Popen([PYTHON, "manage.py", "spawn_virus", *args], cwd=ROOT, env=env)
            try:
                return spawner.wait()
            except KeyboardInterrupt:  # the spawner got it too and says goodbye
                return spawner.wait()
    return refuse("make run is not running: start it first (make spawn adds viruses to its game)")


# What the spawner needs to reach the same game as the server.
# (No secret key: the file is readable by others, and DEBUG needs none.)
GAME_VARIABLES = ("DJANGO_DEBUG", "DATABASE_URL", "REDIS_URL", "REDIS_PREFIX")


def game_env(env: dict[str, str]) -> dict[str, str]:
    return {name: env[name] for name in GAME_VARIABLES if name in env}


def read_state(lock) -> dict:
    lock.seek(0)
    try:
        return json.loads(lock.read() or "{}")
    except ValueError:
        return {}


def write_state(lock, state: dict) -> None:
    lock.seek(0)
    lock.truncate()
    lock.write(json.dumps(state))
    lock.flush()


def in_use(address: str) -> bool:
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
        return True
    return False


def refuse(message: str) -> int:
    print(message, file=sys.stderr)
    return 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["spawn"]:
        sys.exit(spawn(sys.argv[2:]))
    sys.exit(main())
