#!/usr/bin/env python3
"""The openraft spike, measured (issue: cluster phase 0), and its fault run.

    raft-spike.py measure [--netns] [--groups 1000] [--idle 20] [--load-secs 10]
        Three tusk-raft-spike processes (loopback, or each in its own network namespace),
        every one hosting GROUPS groups: time to start and elect, idle CPU / RSS / messages per
        node, replicated append throughput and latency (1 KiB entries, 1, 8 and 64 active
        groups, 64 writers in all), leader election for every group after kill -9 of the node
        leading most, and the idle remedies (longer heartbeat interval, quiesced groups).
        Writes bench-results/raft-spike.{json,md}.

    raft-spike.py faults [--groups 50] [--seconds 40]
        Namespaces only: writers on every node while the harness kills (-9) and restarts a
        node, SIGSTOPs one, cuts and heals a link, isolates a node; the replicas' logs are read
        back at several moments and checked (tests/cluster/checker.py). Exit 1 on any problem.

Every phase is bounded in time; every process and namespace is removed at the end.
"""

import argparse
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
import checker  # noqa: E402
import netns  # noqa: E402

BIN = os.environ.get("SPIKE_BIN", os.path.join(ROOT, "target", "release", "tusk-raft-spike"))
TICK = os.sysconf("SC_CLK_TCK")
PORT = 7100


class Node:
    """One spike process, driven through its stdin and stdout."""

    def __init__(self, i, argv, cluster=None):
        self.i = i
        self.argv = argv
        self.cluster = cluster
        self.start()

    def start(self):
        err = open(os.environ["SPIKE_STDERR"] + f".{self.i}", "a") if os.environ.get(
            "SPIKE_STDERR") else subprocess.DEVNULL
        kw = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                  text=True, bufsize=1, env={**os.environ, "WALRUS_QUIET": "1"})
        if self.cluster:
            self.p = self.cluster.start(self.i, self.argv, **kw)
        else:
            self.p = subprocess.Popen(self.argv, **kw)
        self.lines = queue.Queue()
        self.stash = {}
        threading.Thread(target=self._read, args=(self.p, self.lines), daemon=True).start()

    @staticmethod
    def _read(p, q):
        for line in p.stdout:
            try:
                q.put(json.loads(line))
            except ValueError:
                pass

    def send(self, cmd):
        if not self.alive():
            raise RuntimeError(f"node {self.i} exited unexpectedly (code {self.p.returncode})")
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()

    def wait_for(self, key, timeout):
        """The next message with `key`; others that arrive first are kept for their callers
        (a command's answer can come after answers to commands sent later)."""
        if self.stash.get(key):
            return self.stash[key].pop(0)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                m = self.lines.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                break
            if key in m:
                return m[key]
            for k, v in m.items():
                self.stash.setdefault(k, []).append(v)
        raise TimeoutError(f"node {self.i}: no {key!r} within {timeout}s")

    def report(self, timeout=10):
        self.send("report")
        return self.wait_for("report", timeout)

    def alive(self):
        return self.p.poll() is None

    def cpu_seconds(self):
        with open(f"/proc/{self.p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def rss_mb(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def kill(self):
        if self.alive():
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(timeout=10)


def start_cluster(args, work, cluster, heartbeat_ms=50, election=(150, 300), fresh=True,
                  sync_heartbeats=False):
    n = 3
    addr = (lambda i: f"{cluster.addr(i)}:{PORT}") if cluster else (lambda i: f"127.0.0.1:{PORT + i}")
    peers = ",".join(f"{i}={addr(i)}" for i in range(1, n + 1))
    nodes = {}
    for i in range(1, n + 1):
        data = os.path.join(work, f"n{i}")
        if fresh:
            shutil.rmtree(data, ignore_errors=True)
        argv = [BIN, "--id", str(i), "--peers", peers, "--groups", str(args.groups),
                "--data", data, "--heartbeat-ms", str(heartbeat_ms),
                "--election-min-ms", str(election[0]), "--election-max-ms", str(election[1]),
                "--report-ms", "3600000"]
        if i == 1:
            argv.append("--init")
        if sync_heartbeats:
            argv.append("--sync-heartbeats")
        if os.environ.get("SPIKE_ARGS"):
            argv += os.environ["SPIKE_ARGS"].split()
        nodes[i] = Node(i, argv, cluster)
    t0 = time.time()
    for nd in nodes.values():
        nd.wait_for("started", 120)
    started = time.time() - t0
    elected = wait_all_led(args.groups, nodes.values(), 120) - t0
    return nodes, started, elected


def wait_all_led(groups, nodes, timeout):
    """Polls until the live nodes lead every group between them; returns the time."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        live = [n for n in nodes if n.alive()]
        reps = [n.report() for n in live]
        if sum(r["leading"] for r in reps) >= groups and all(r["with_leader"] >= groups for r in reps):
            return time.time()
        time.sleep(0.05)
    raise TimeoutError("groups without a leader")


def idle(nodes, seconds):
    """CPU, RSS and messages per node over an idle interval."""
    before = {i: (n.cpu_seconds(), n.report()) for i, n in nodes.items()}
    time.sleep(seconds)
    out = {}
    for i, n in nodes.items():
        cpu0, r0 = before[i]
        r1 = n.report()
        out[i] = {
            "cpu_pct": round(100 * (n.cpu_seconds() - cpu0) / seconds, 1),
            "rss_mb": round(n.rss_mb(), 1),
            "heartbeats_per_s": round((r1["heartbeats"] - r0["heartbeats"]) / seconds),
            "frames_per_s": round((r1["frames"] - r0["frames"]) / seconds),
            "kb_per_s": round((r1["bytes"] - r0["bytes"]) / seconds / 1024, 1),
            "fsyncs_per_s": round((r1["fsyncs"] - r0["fsyncs"]) / seconds, 1),
            "leading": r1["leading"],
        }
    return out


def load(nodes, work, groups, secs, size=1024, writers=64):
    conc = max(1, writers // groups)
    files = {}
    cpu0 = {i: n.cpu_seconds() for i, n in nodes.items() if n.alive()}
    for i, n in nodes.items():
        if n.alive():
            files[i] = os.path.join(work, f"acks-{i}-{groups}.txt")
            n.send(f"load {groups} {secs} {conc} {size} {files[i]}")
    results = {i: nodes[i].wait_for("load", secs + 120) for i in files}
    lat = []
    acks = []
    for f in files.values():
        with open(f) as fh:
            for line in fh:
                g, idx, rec, us = line.split()
                lat.append(int(us))
                acks.append((int(g), int(idx), int(rec)))
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))] / 1000 if lat else None  # noqa: E731
    total = sum(r["acks"] for r in results.values())
    cpu = {i: round(100 * (nodes[i].cpu_seconds() - c) / secs) for i, c in cpu0.items()}
    return {
        "cpu_pct_per_node": cpu,
        "active_groups": groups,
        "writers": conc * groups,
        "entries_per_s": round(total / secs),
        "mb_per_s": round(total * size / secs / 1e6, 1),
        "p50_ms": pct(0.5), "p99_ms": pct(0.99), "p999_ms": pct(0.999),
        "errors": sum(r["errors"] for r in results.values()),
    }, acks


def dump_all(nodes, work, groups, tag):
    out = {}
    for i, n in nodes.items():
        if not n.alive():
            continue
        f = os.path.join(work, f"dump-{tag}-{i}.txt")
        n.send(f"dump {groups} {f}")
        n.wait_for("dumped", 60)
        out[i] = checker.read_dump(f)
    return out


def stop_all(nodes):
    for n in nodes.values():
        try:
            if n.alive():
                n.send("quit")
                n.p.wait(timeout=10)
        except Exception:
            pass
        n.kill()


def measure(args):
    cluster = netns.Cluster(3, prefix="tusk-spike") if args.netns else None
    work = tempfile.mkdtemp(prefix="raft-spike-")
    res = {"groups": args.groups, "transport": "netns" if args.netns else "loopback",
           "machine": f"{os.cpu_count()} cores", "runs": {}}
    try:
        variants = [(50, (150, 300), False, False), (500, (1500, 3000), False, False),
                    (50, (150, 300), False, True), (50, (150, 300), True, False)]
        for hb, el, quiesce, synced in variants:
            name = ("quiesced" if quiesce else f"heartbeat {hb} ms"
                    + (", one tick per node" if synced else ""))
            if args.only and args.only not in name:
                continue
            print(f"--- {name}", flush=True)
            nodes, started, elected = start_cluster(args, work, cluster, hb, el,
                                                    sync_heartbeats=synced)
            run = {"start_s": round(started, 2), "elect_all_s": round(elected, 2)}
            time.sleep(2)
            if quiesce:
                for n in nodes.values():
                    n.send("quiesce on")
                    n.wait_for("quiesced", 30)
            run["idle"] = idle(nodes, args.idle)
            print(json.dumps(run), flush=True)
            if not quiesce and not synced and not args.no_load:
                run["load"] = []
                for g in (1, 8, 64):
                    r, _ = load(nodes, work, g, args.load_secs)
                    print(json.dumps(r), flush=True)
                    run["load"].append(r)
                # Kill -9 the node leading most groups; time until the others lead them all.
                reps = {i: n.report() for i, n in nodes.items()}
                victim = max(reps, key=lambda i: reps[i]["leading"])
                led = reps[victim]["leading"]
                t0 = time.time()
                nodes[victim].kill()
                done = wait_all_led(args.groups, [n for n in nodes.values() if n.alive()], 120)
                run["kill"] = {"victim": victim, "groups_it_led": led,
                               "reelect_all_s": round(done - t0, 2)}
                print(json.dumps(run["kill"]), flush=True)
            stop_all(nodes)
            res["runs"][name] = run
    finally:
        if cluster:
            cluster.close()
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(ROOT, "bench-results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench-results", "raft-spike.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(ROOT, "bench-results", "raft-spike.md"), "w") as f:
        f.write(markdown(res))
    print(markdown(res))


def markdown(res):
    lines = [f"# openraft spike: 3 nodes × {res['groups']} groups ({res['transport']}, "
             f"{res['machine']}, all 3 nodes and the load on one machine)", ""]
    lines += ["| run | start s | elect all s | idle CPU % per node | RSS MB per node | "
              "heartbeats/s per node | frames/s per node | KB/s per node |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, run in res["runs"].items():
        idl = run["idle"]
        col = lambda k: " / ".join(str(idl[i][k]) for i in sorted(idl))  # noqa: E731
        lines.append(f"| {name} | {run['start_s']} | {run['elect_all_s']} | {col('cpu_pct')} | "
                     f"{col('rss_mb')} | {col('heartbeats_per_s')} | {col('frames_per_s')} | "
                     f"{col('kb_per_s')} |")
    for name, run in res["runs"].items():
        if "load" in run:
            lines += ["", f"Replicated appends ({name}), 1 KiB entries, 64 writers in all, "
                      "acknowledged when committed (a majority fsynced), the other groups idle:",
                      "",
                      "| active groups | entries/s | MB/s | p50 ms | p99 ms | p99.9 ms | CPU % per node |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for r in run["load"]:
                cpu = " / ".join(str(v) for _, v in sorted(r["cpu_pct_per_node"].items()))
                lines.append(f"| {r['active_groups']} | {r['entries_per_s']} | {r['mb_per_s']} | "
                             f"{r['p50_ms']} | {r['p99_ms']} | {r['p999_ms']} | {cpu} |")
            k = run["kill"]
            lines += ["", f"kill -9 of node {k['victim']} (leading {k['groups_it_led']} groups): "
                      f"every group led again after {k['reelect_all_s']} s.", ""]
    return "\n".join(lines) + "\n"


def busiest(nodes):
    reps = {i: n.report() for i, n in nodes.items() if n.alive()}
    return max(reps, key=lambda i: reps[i]["leading"])


def faults(args):
    if not netns.available():
        print("faults: network namespaces unavailable here (needs root and iproute2)")
        return 2
    checker.self_test()
    work = tempfile.mkdtemp(prefix="raft-faults-")
    problems, truncations = {}, 0
    with netns.Cluster(3, prefix="tusk-flt") as cluster:
        nodes, _, _ = start_cluster(args, work, cluster)
        reads, acks, isolated = [], [], []
        # Load from every node in background rounds while faults come and go.
        plan = [
            ("kill -9 node 1 and restart it", lambda: nodes[1].kill(),
             lambda: nodes[1].start()),
            ("SIGSTOP node 2 for 3 s", lambda: cluster.stop(2), lambda: cluster.cont(2)),
            ("cut link 1-3", lambda: cluster.cut(1, 3), lambda: cluster.heal(1, 3)),
            # The node leading most groups, isolated while its writers propose: its
            # uncommitted suffixes diverge and are truncated when it rejoins.
            ("isolate the busiest leader", lambda: isolated.append(busiest(nodes)) or
             cluster.isolate(isolated[-1]), lambda: cluster.rejoin(isolated[-1])),
            ("kill -9 node 2 and restart it", lambda: nodes[2].kill(),
             lambda: nodes[2].start()),
        ]
        deadline = time.time() + args.seconds
        for what, inject, repair in plan:
            if time.time() > deadline:
                break
            print(f"--- {what}", flush=True)
            files, procs = {}, {}
            for i, n in nodes.items():
                if n.alive():
                    files[i] = os.path.join(work, f"acks-{len(reads)}-{i}.txt")
                    procs[i] = n.p
                    base = (i << 56) | (len(reads) + 1) << 40
                    n.send(f"load {args.groups} 6 2 256 {files[i]} {base}")
            time.sleep(1.5)
            inject()
            time.sleep(3)
            repair()
            for i in files:
                # A node killed during the round logged its acknowledgements until it died.
                if nodes[i].p is procs[i] and nodes[i].alive():
                    nodes[i].wait_for("load", 60)
                if os.path.exists(files[i]):
                    acks += checker.read_acks(files[i])
            # Restarted nodes report "started" first.
            for n in nodes.values():
                n.report(timeout=60)
            wait_all_led(args.groups, list(nodes.values()), 60)
            time.sleep(1)
            reads.append(dump_all(nodes, work, args.groups, len(reads)))
        time.sleep(2)
        reads.append(dump_all(nodes, work, args.groups, "final"))
        truncations = sum(n.report()["truncations"] for n in nodes.values())
        problems = checker.check(acks, reads)
        stop_all(nodes)
    shutil.rmtree(work, ignore_errors=True)
    print(f"{len(acks)} acknowledged records, {len(reads)} reads of 3 replicas, "
          f"{truncations} log truncations (since the last restarts)")
    if problems:
        for k, v in problems.items():
            print(f"PROBLEM {k}: {len(v)}, e.g. {v[:5]}")
        return 1
    print("checker: every acknowledged record present once at its index on every replica, "
          "replicas agree, nothing read later vanished")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["measure", "faults"])
    ap.add_argument("--netns", action="store_true")
    ap.add_argument("--groups", type=int, default=None)
    ap.add_argument("--idle", type=float, default=20)
    ap.add_argument("--load-secs", type=float, default=10)
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--only", default="", help="run only the variants whose name contains this")
    ap.add_argument("--no-load", action="store_true")
    args = ap.parse_args()
    if args.mode == "measure":
        args.groups = args.groups or 1000
        measure(args)
        return 0
    args.groups = args.groups or 50
    return faults(args)


if __name__ == "__main__":
    sys.exit(main())
