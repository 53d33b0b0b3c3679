"""`make run`, `make spawn` and manage.py, as a developer meets them: real child processes."""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time

import httpx
import pytest
from websockets.sync.client import connect

from tests.support.harness import PYTHON, ROOT, free_port


def dev_env(directory, port: int) -> dict[str, str]:
    """A developer's shell: no game settings, a database and a run directory of the test's own."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VIRUS_", "REDIS_", "DATABASE_"))
    }
    env.update(
        DEV_RUN_DIR=str(directory / "run"),
        DATABASE_URL=f"sqlite:///{directory / 'db.sqlite3'}",
        ADDRESS=f"127.0.0.1:{port}",
        PYTHONUNBUFFERED="1",
    )
    return env


def dev(env, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "tools.dev", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def start_dev(directory) -> tuple[subprocess.Popen, dict]:
    """Start `make run` (tools.dev) on a free port, in a session (process group) of its own;
    wait until it serves. Its output collects in a file."""
    port = free_port()
    env = dev_env(directory, port)
    output = directory / "output.log"
    with open(output, "wb") as log:
        process = subprocess.Popen(
            [PYTHON, "-m", "tools.dev"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not healthy(url):
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(output.read_text())
        time.sleep(0.2)
    return process, {"env": env, "url": url, "port": port, "output": output, "directory": directory}


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """One `make run` serving for the module's tests."""
    process, details = start_dev(tmp_path_factory.mktemp("dev"))
    try:
        yield details
    finally:
        os.killpg(process.pid, signal.SIGINT)  # the terminal's Ctrl-C
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise


def test_make_run_stopped_with_sigterm_stops_the_server_and_the_spawner_too(tmp_path):
    process, details = start_dev(tmp_path)
    process.send_signal(signal.SIGTERM)  # a service manager or `kill`, to make run alone
    try:
        assert process.wait(30) == 0
        deadline = time.monotonic() + 15
        while group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not group_alive(process.pid), "runserver, the spawner or Redis outlived make run"
        assert not healthy(details["url"])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group is still there (zombies aside)."""
    ps = subprocess.run(["ps", "-o", "stat=", "-g", str(pgid)], capture_output=True, text=True)
    return any(not stat.startswith("Z") for stat in ps.stdout.split())


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_second_make_run_refuses_and_leaves_the_first_alone(running):
    second = dev(running["env"])
    assert second.returncode == 1
    assert second.stderr.count("\n") == 1 and "already running" in second.stderr
    assert (running["directory"] / "run" / "redis.sock").exists()
    assert httpx.get(f"{running['url']}/healthz").json() == {"database": "ok", "channel_layer": "ok"}


def test_make_run_refuses_a_port_in_use(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        refused = dev(dev_env(tmp_path, taken.getsockname()[1]))
    assert refused.returncode == 1
    assert "already in use" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "run" / "redis.sock").exists()


def test_django_log_lines_are_printed_once(running):
    assert httpx.get(f"{running['url']}/no-such-page").status_code == 404
    deadline = time.monotonic() + 10
    while "/no-such-page 404" not in running["output"].read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    output = running["output"].read_text()
    assert output.count("Not Found: /no-such-page") == 1
    assert output.count("/no-such-page 404") == 1
    assert output.count("Watching for file changes") == 1


def test_make_spawn_reaches_the_running_game(running):
    with connect(running["url"].replace("http", "ws") + "/ws/viruses/", origin=running["url"]) as ws:
        assert json.loads(ws.recv(10))["type"] == "snapshot"
        spawned = dev(running["env"], "spawn", "--count", "2")
        assert spawned.returncode == 0, spawned.stderr
        ids = set(re.findall(r"Spawned ([0-9a-f-]{36})", spawned.stdout))
        assert len(ids) == 2
        pushed = set()
        while not ids <= pushed:
            messages = json.loads(ws.recv(10))
            for message in messages if isinstance(messages, list) else [messages]:
                if message["type"] == "virus.created":
                    pushed.add(message["virus"]["id"])


def test_make_spawn_without_make_run_says_so(tmp_path):
    refused = dev(dev_env(tmp_path, free_port()), "spawn")
    assert refused.returncode == 1
    assert "not running" in refused.stderr and "Traceback" not in refused.stderr


def test_manage_py_without_a_secret_key_says_so_in_one_line(tmp_path):
    env = {**dev_env(tmp_path, free_port()), "DJANGO_DEBUG": "0"}
    done = subprocess.run([PYTHON, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert "DJANGO_SECRET_KEY" in done.stderr and "Traceback" not in done.stderr
