"""A real Tusk broker process per test: its own port and data dir."""

import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TUSK_BIN = os.environ.get("TUSK_BIN", os.path.join(ROOT, "target", "release", "tusk"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, data_dir, extra_args=(), port=None, preexec_fn=None, log_level="info"):
        self.data_dir = data_dir
        self.log_level = log_level
        # Run in the broker's process before exec (a seccomp filter, for example).
        self.preexec_fn = preexec_fn
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.proc = None
        self.log_path = os.path.join(data_dir, "tusk.log")

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        args = [
            TUSK_BIN,
            "--listen", self.bootstrap,
            "--data-dir", os.path.join(self.data_dir, "data"),
            "--group-initial-rebalance-delay-ms", "0",
            "--log-level", self.log_level,
        ] + self.extra_args
        # The listener is bound before the data dir is opened, so a successful connect says
        # nothing: the broker is up once this start has logged "tusk started".
        self.log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            args, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=self.preexec_fn
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tusk exited early:\n{self.read_log()}")
            if "tusk started" in self.read_log_since_start():
                return self
            time.sleep(0.02)
        raise RuntimeError(f"tusk did not start:\n{self.read_log()[-4000:]}")

    def read_log_since_start(self):
        """What this run of the broker (the latest start) has logged."""
        with open(self.log_path, "rb") as f:
            f.seek(getattr(self, "log_offset", 0))
            return f.read().decode(errors="replace")

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        if self.proc:
            self.log.close()
        code = self.proc.returncode if self.proc else None
        self.proc = None
        return code

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        self.stop()
        return self.start()


@pytest.fixture
def broker_factory():
    made = []
    dirs = []

    def make(extra_args=(), data_dir=None, preexec_fn=None):
        if data_dir is None:
            d = tempfile.TemporaryDirectory(prefix="tusk-test-")
            dirs.append(d)
            data_dir = d.name
        b = Broker(data_dir, extra_args, preexec_fn=preexec_fn)
        made.append(b)
        return b.start()

    yield make
    for b in made:
        # Shown by pytest when the test fails.
        print(f"--- broker log ({b.bootstrap}) ---\n{b.read_log()[-4000:]}")
        try:
            b.stop(signal.SIGKILL)
        except Exception:
            pass
    for d in dirs:
        d.cleanup()


@pytest.fixture
def broker(broker_factory):
    b = broker_factory()
    yield b
    assert b.proc is None or b.proc.poll() is None, f"broker died:\n{b.read_log()}"
    assert "panicked" not in b.read_log()
