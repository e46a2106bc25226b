"""`docker compose up` end to end with the FROM-scratch image: produce and consume through the
container's published port with kcat, restart the container, find the data still there."""

import os
import shutil
import subprocess
import time

import pytest

from conftest import ROOT, free_port

COMPOSE_DIR = os.path.join(ROOT, "compose")


def docker_ok():
    return shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def compose_cmd():
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def kcat(port, *args, input=None):
    return subprocess.run(["kcat", "-b", f"127.0.0.1:{port}", *args], input=input, capture_output=True, timeout=60)


@pytest.mark.skipif(not docker_ok(), reason="no Docker engine (docker info failed): compose test skipped")
def test_compose_up_produce_restart_consume():
    compose = compose_cmd()
    if compose is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed: compose test skipped")
    subprocess.run([os.path.join(ROOT, "scripts", "build-image.sh")], check=True, cwd=ROOT)
    port = free_port()
    env = {**os.environ, "TUSK_HOST_PORT": str(port)}
    project = f"tusktest{port}"
    base = compose + ["-p", project, "-f", os.path.join(COMPOSE_DIR, "docker-compose.yml")]

    def run(*args, check=True):
        return subprocess.run(base + list(args), env=env, cwd=COMPOSE_DIR, capture_output=True, check=check, timeout=180)

    def wait_healthy():
        deadline = time.time() + 60
        while time.time() < deadline:
            r = kcat(port, "-L")
            if r.returncode == 0 and b"broker 1 at 127.0.0.1" in r.stdout:
                return
            time.sleep(0.5)
        raise AssertionError(run("logs", check=False).stdout.decode())

    try:
        run("up", "-d")
        wait_healthy()
        r = kcat(port, "-P", "-t", "compose-topic", input=b"".join(b"m%d\n" % i for i in range(100)))
        assert r.returncode == 0, r.stderr
        run("restart")
        wait_healthy()
        r = kcat(port, "-C", "-t", "compose-topic", "-o", "beginning", "-e")
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().splitlines() == [f"m{i}" for i in range(100)]
        logs = run("logs", check=False).stdout.decode()
        assert "tusk started" in logs
    finally:
        run("down", "-v", check=False)
