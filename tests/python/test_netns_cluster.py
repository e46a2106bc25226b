"""The cluster harness (tests/cluster/netns.py) with real Tusk brokers: each broker in its own
network namespace with its own address, a client in another, faults from the harness.

Tusk is one node today, so the brokers are independent; this is the template the replicated
broker's tests will use (the harness itself is exercised on the Raft spike by
`make cluster-faults`).
"""

import os
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import TUSK_BIN

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "cluster"))
import netns  # noqa: E402

pytestmark = pytest.mark.skipif(not netns.available(),
                                reason="network namespaces need root and iproute2")

CLIENT = r"""
import sys
from confluent_kafka import Producer, Consumer
bootstrap, topic, mode, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if mode == "produce":
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 4000,
                  "socket.timeout.ms": 2000})
    failed = []
    for i in range(n):
        p.produce(topic, f"m{i}".encode(), on_delivery=lambda e, m: e and failed.append(e))
    left = p.flush(8)
    print("OK" if not failed and left == 0 else f"FAILED {len(failed)} left {left}")
else:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "g", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = set()
    import time
    deadline = time.time() + 20
    while len(got) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.add(m.value().decode())
    c.close()
    print("OK" if got == {f"m{i}" for i in range(n)} else f"GOT {len(got)}")
"""


def client(cluster, i, bootstrap, mode, n=200, timeout=40):
    r = subprocess.run(
        ["ip", "netns", "exec", cluster.ns(i), sys.executable, "-c", CLIENT, bootstrap,
         "events", mode, str(n)],
        capture_output=True, text=True, timeout=timeout)
    return r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-500:]


def start_broker(cluster, i, data):
    addr = f"{cluster.addr(i)}:9092"
    log = open(os.path.join(data, f"tusk-{i}.log"), "ab")
    p = cluster.start(i, [TUSK_BIN, "--listen", addr, "--data-dir", os.path.join(data, f"d{i}"),
                          "--group-initial-rebalance-delay-ms", "0"],
                      stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    path = os.path.join(data, f"tusk-{i}.log")
    while time.time() < deadline:
        with open(path, "rb") as f:
            if f.read().count(b"tusk started") >= cluster.starts.get(i, 0) + 1:
                cluster.starts[i] = cluster.starts.get(i, 0) + 1
                return p, addr
        assert p.poll() is None, "tusk exited"
        time.sleep(0.05)
    raise RuntimeError("tusk did not start")


def test_brokers_in_namespaces_survive_kill_and_partition():
    with tempfile.TemporaryDirectory() as data, netns.Cluster(3, prefix="tusk-py") as cluster:
        cluster.starts = {}
        _, addr1 = start_broker(cluster, 1, data)
        # A client in namespace 3 reaches the broker in namespace 1 over the veths.
        assert client(cluster, 3, addr1, "produce") == "OK"
        # Cut the link: the client cannot deliver (its messages time out, nothing hangs).
        cluster.cut(1, 3)
        assert client(cluster, 3, addr1, "produce", n=5).startswith("FAILED")
        cluster.heal(1, 3)
        # kill -9 and restart inside its namespace: every acknowledged message is there.
        cluster.kill(1)
        _, addr1 = start_broker(cluster, 1, data)
        assert client(cluster, 2, addr1, "consume") == "OK"
        # SIGSTOP: a paused broker answers nothing; after SIGCONT it serves again.
        cluster.stop(1)
        assert client(cluster, 2, addr1, "produce", n=5).startswith("FAILED")
        cluster.cont(1)
        assert client(cluster, 2, addr1, "produce", n=5) == "OK"
