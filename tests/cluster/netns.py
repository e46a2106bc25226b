"""A cluster test harness on Linux network namespaces (ip netns, veth), no Docker.

Each node gets a namespace of its own (`<prefix>-<i>`, address 10.77.<net>.<i>/24 on a veth),
joined to the others through a bridge inside one more namespace (`<prefix>-br`): every
address and link is made by the harness and removed by `close()` (also on an exception,
through the context manager), and no traffic touches the host's interfaces.

Faults, all bounded by the caller:
- `kill(i)` (SIGKILL), `stop(i)` / `cont(i)` (SIGSTOP / SIGCONT), `start(i)` again;
- `cut(a, b)` / `heal(a, b)`: the link between two nodes, both ways (blackhole routes in
  each node's namespace: packets are dropped, connections hang as under a real partition);
- `isolate(i)` / `rejoin(i)`: one node from all others;
- `netem(i, delay_ms, loss_pct)` / `clear_netem(i)`: delay and loss on a node's link (tc
  netem on its veth) where the kernel has `sch_netem` (`netem_available()`; this project's CI
  kernel does not, and says so instead of skipping silently).

Needs root (CAP_NET_ADMIN); `available()` says whether namespaces can be made here.
"""

import os
import signal
import subprocess
import time


def _run(*args, check=True):
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def available():
    """True when this process may create network namespaces (root, iproute2)."""
    name = f"tusk-probe-{os.getpid()}"
    try:
        r = _run("ip", "netns", "add", name, check=False)
        if r.returncode != 0:
            return False
        _run("ip", "netns", "del", name, check=False)
        return True
    except FileNotFoundError:
        return False


def netem_available():
    """True when the kernel has the netem qdisc (tc netem delay/loss)."""
    name = f"tusk-probe-netem-{os.getpid()}"
    if _run("ip", "netns", "add", name, check=False).returncode != 0:
        return False
    try:
        r = _run("ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root",
                 "netem", "delay", "1ms", check=False)
        return r.returncode == 0
    finally:
        _run("ip", "netns", "del", name, check=False)


class Cluster:
    def __init__(self, n, prefix="tusk", net=77):
        self.n = n
        self.prefix = prefix
        self.net = net
        self.br = f"{prefix}-br"
        self.procs = {}
        self.cuts = set()
        self._made = []
        try:
            self._setup()
        except Exception:
            self.close()
            raise

    def ns(self, i):
        return f"{self.prefix}-{i}"

    def addr(self, i):
        return f"10.{self.net}.0.{i}"

    def _setup(self):
        # Leftovers of a killed run with the same prefix go first.
        for name in [self.br] + [self.ns(i) for i in range(1, self.n + 1)]:
            _run("ip", "netns", "del", name, check=False)
        _run("ip", "netns", "add", self.br)
        self._made.append(self.br)
        _run("ip", "netns", "exec", self.br, "ip", "link", "add", "br0", "type", "bridge")
        _run("ip", "netns", "exec", self.br, "ip", "link", "set", "br0", "up")
        for i in range(1, self.n + 1):
            ns = self.ns(i)
            _run("ip", "netns", "add", ns)
            self._made.append(ns)
            # The pair is made inside the node's namespace, its far end moved to the bridge's.
            _run("ip", "netns", "exec", ns, "ip", "link", "add", "eth0", "type", "veth",
                 "peer", "name", f"p{i}")
            _run("ip", "netns", "exec", ns, "ip", "link", "set", f"p{i}", "netns", self.br)
            _run("ip", "netns", "exec", self.br, "ip", "link", "set", f"p{i}", "master", "br0")
            _run("ip", "netns", "exec", self.br, "ip", "link", "set", f"p{i}", "up")
            _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{self.addr(i)}/24",
                 "dev", "eth0")
            _run("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
            _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        # (No reachability probe: the image has no ping, and the nodes retry connections.)

    # ----- processes ---------------------------------------------------------------------

    def start(self, i, argv, **popen):
        """Starts `argv` inside node i's namespace; returns the Popen."""
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(i)] + list(argv), **popen)
        self.procs[i] = p
        return p

    def pid(self, i):
        """The node's own process (the child of `ip netns exec`, which execs it)."""
        return self.procs[i].pid

    def kill(self, i):
        p = self.procs.get(i)
        if p and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)

    def stop(self, i):
        self.procs[i].send_signal(signal.SIGSTOP)

    def cont(self, i):
        self.procs[i].send_signal(signal.SIGCONT)

    # ----- links -------------------------------------------------------------------------

    def cut(self, a, b):
        for x, y in ((a, b), (b, a)):
            _run("ip", "netns", "exec", self.ns(x), "ip", "route", "add", "blackhole",
                 f"{self.addr(y)}/32")
        self.cuts.add((min(a, b), max(a, b)))

    def heal(self, a, b):
        for x, y in ((a, b), (b, a)):
            _run("ip", "netns", "exec", self.ns(x), "ip", "route", "del", "blackhole",
                 f"{self.addr(y)}/32", check=False)
        self.cuts.discard((min(a, b), max(a, b)))

    def isolate(self, i):
        for j in range(1, self.n + 1):
            if j != i:
                self.cut(i, j)

    def rejoin(self, i):
        for j in range(1, self.n + 1):
            if j != i:
                self.heal(i, j)

    def netem(self, i, delay_ms=0, loss_pct=0.0):
        args = ["ip", "netns", "exec", self.ns(i), "tc", "qdisc", "replace", "dev", "eth0",
                "root", "netem"]
        if delay_ms:
            args += ["delay", f"{delay_ms}ms"]
        if loss_pct:
            args += ["loss", f"{loss_pct}%"]
        _run(*args)

    def clear_netem(self, i):
        _run("ip", "netns", "exec", self.ns(i), "tc", "qdisc", "del", "dev", "eth0", "root",
             check=False)

    # ----- teardown ----------------------------------------------------------------------

    def close(self):
        for i in list(self.procs):
            p = self.procs[i]
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGCONT)
                    p.send_signal(signal.SIGKILL)
                    p.wait(timeout=10)
                except Exception:
                    pass
        # Deleting a namespace deletes its veth ends and routes with it.
        for name in reversed(self._made):
            _run("ip", "netns", "del", name, check=False)
        self._made = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
