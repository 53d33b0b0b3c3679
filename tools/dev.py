"""`make run`: a local Redis, migrations, the development server and the spawner, together.

One Ctrl-C stops all of them.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tools.local_redis import LocalRedis

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def main() -> int:
    env = {**os.environ, "DJANGO_DEBUG": os.environ.get("DJANGO_DEBUG", "1")}
    local_redis = None
    if not env.get("REDIS_URL"):
        local_redis = LocalRedis(ROOT / ".run").start()
        env["REDIS_URL"] = local_redis.url
        print(f"Local Redis at {local_redis.url}", flush=True)
    address = env.get("ADDRESS", "127.0.0.1:8000")
    children = []
    try:
        subprocess.run([PYTHON, "manage.py", "migrate", "--no-input"], cwd=ROOT, env=env, check=True)
        children.append(subprocess.Popen([PYTHON, "manage.py", "runserver", address], cwd=ROOT, env=env))
        children.append(
            subprocess.Popen(
                [PYTHON, "manage.py", "spawn_virus", "--count", "3", "--spread", "60", "--every", "60"],
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


if __name__ == "__main__":
    sys.exit(main())
