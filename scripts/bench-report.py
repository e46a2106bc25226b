#!/usr/bin/env python3
"""Writes BENCHMARKS.md from bench-results/*.csv (run by `make bench`)."""
import csv
import os
import platform
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RES = os.path.join(ROOT, "bench-results")


def rows(name):
    p = os.path.join(RES, name)
    return list(csv.DictReader(open(p))) if os.path.exists(p) else []


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Linux {platform.release()}"


def storage_table():
    r = rows("storage.csv")
    if not r:
        return "_no storage results yet: `make bench-storage`_\n", ""
    by = {}
    for x in r:
        by.setdefault((x["workload"], x["topics"], x["schedule"], x["backend"]), {})[x["engine"]] = x
    out = ["| workload | topics | fsync | backend | Walrus | walrus-rust 0.2.0 | ratio |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for (w, t, s, b), e in by.items():
        ours, seed = e.get("walrus"), e.get("walrus-rust")
        if not ours or not seed:
            continue
        if w == "cursor_commit":
            a, c, unit = float(ours["ops_per_s"]), float(seed["ops_per_s"]), "commits/s"
        elif w == "reopen":
            a, c, unit = float(ours["seconds"]) * 1000, float(seed["seconds"]) * 1000, "ms"
        else:
            a, c, unit = float(ours["mb_per_s"]), float(seed["mb_per_s"]), "MB/s"
        ratio = (c / a) if w == "reopen" else (a / c if c else float("inf"))
        out.append(f"| {w} | {t} | {s} | {b} | {a:,.1f} {unit} | {c:,.1f} {unit} | {ratio:.1f}× |")
    disk = r[0].get("disk_mb_s", "?")
    return "\n".join(out) + "\n", disk


def e2e_table():
    r = rows("e2e.csv")
    if not r:
        return "_no end-to-end results yet: `make bench-e2e`_\n"
    out = ["| run | produce msg/s | produce MB/s | p50 ms | p99 ms | p99.9 ms | max ms | consume MB/s | broker CPU s (prod/cons) | broker RSS peak / idle MiB |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for x in r:
        out.append(
            f"| {x['label']} | {float(x['produce_msg_s']):,.0f} | {float(x['produce_mb_s']):,.1f} | {x['lat_p50_ms']} | {x['lat_p99_ms']} | "
            f"{x['lat_p999_ms']} | {x['lat_max_ms']} | {float(x['consume_mb_s']):,.1f} | {x['broker_cpu_produce_s']} / {x['broker_cpu_consume_s']} | "
            f"{x['broker_rss_peak_mib']} / {x['broker_rss_idle_mib']} |")
    return "\n".join(out) + "\n"


def restart_tables():
    out = []
    r = rows("reopen.csv")
    if r:
        x = r[-1]
        out.append(
            f"`make bench-reopen` (`storage/examples/reopen_scale.rs`): Walrus opening an instance that "
            f"holds {int(x['bytes']) / 2**30:.1f} GiB in {x['topics']} topics: **{x['warm_ms']} ms** with the "
            f"page cache warm, **{x['cold_ms']} ms** after dropping it (target: under 1 s). Recovery reads "
            "one header per block and peeks past each block's last checkpoint.\n")
    r = rows("startup.csv")
    if r:
        out.append("`make bench-startup` (`scripts/bench-startup.sh`): Tusk's start time (its start line's "
                   "`startup_ms`) holding ~2 GiB in 8 partitions.\n")
        out.append("| case | data | start | batches scanned |")
        out.append("| --- | --- | --- | --- |")
        what = {"clean": "after SIGTERM (snapshots saved)", "cold": "after SIGTERM, page cache dropped",
                "crash": "after kill -9, 200k records since the last snapshot"}
        for x in r[-3:]:
            out.append(f"| {what.get(x['case'], x['case'])} | {int(x['bytes']) / 2**30:.1f} GiB | "
                       f"{x['startup_ms']} ms | {x['batches_scanned']} |")
        out.append("\nBefore partition snapshots, the same 3 GiB data dir took 336 ms warm and 1,711 ms "
                   "cold to start (every batch header read).")
    return "\n".join(out) if out else "_no restart results yet: `make bench-reopen bench-startup`_"


def targets():
    e = {x["label"]: x for x in rows("e2e.csv")}
    st = rows("storage.csv")
    disk = float(st[0]["disk_mb_s"]) if st else 0.0

    def get(label, key):
        x = e.get(label)
        return float(x[key]) if x else float("nan")

    kib = get("1KiB acks=all 1s-fsync", "produce_mb_s")
    small = get("100B acks=all 1s-fsync", "produce_msg_s")
    cons = get("1KiB acks=all 1s-fsync", "consume_mb_s")
    p99 = get("latency 10k/s linger0 1s-fsync", "lat_p99_ms")
    p99s = get("latency 10k/s linger0 sync-each", "lat_p99_ms")
    rss = max((float(x["broker_rss_peak_mib"]) for x in e.values()), default=float("nan"))
    idle = max((float(x["broker_rss_idle_mib"]) for x in e.values()), default=float("nan"))
    lines = [
        "| target | measured | |",
        "| --- | --- | --- |",
        f"| 1 KiB, acks=all, 1 s fsync, 8 partitions: ≥ 75% of disk bandwidth | {kib:.0f} MB/s ({kib / disk * 100 if disk else 0:.0f}% of the {disk:.0f} MB/s dd figure; a short burst, not 60 s) | burst only: a sustained 60 s run is still to do |",
        f"| 100-byte messages ≥ 1,000,000 msg/s | {small:,.0f} msg/s | {'met' if small >= 1e6 else 'not met'} |",
        f"| consume 1 KiB ≥ 600 MB/s, default consumer settings | {cons:.0f} MB/s | {'met' if cons >= 600 else 'not met'} |",
        f"| p99 ≤ 2 ms at 10,000 msg/s, linger 0, 1 s fsync | {p99:.1f} ms | {'met' if p99 <= 2 else 'not met'} |",
        f"| p99 ≤ 2 × disk fsync p99 with sync-each | {p99s:.1f} ms | disk fsync p99 not measured |",
        f"| broker RSS ≤ 100 MiB under load, ≤ 20 MiB idle | {rss:.0f} MiB peak, {idle:.0f} MiB idle | {'met' if rss <= 100 and idle <= 20 else 'not met'} |",
        "| start to accepting connections ≤ 50 ms empty | 2-8 ms (the `startup_ms` field of the start log line); 4-10 ms holding 2 GiB (see Restarts) | met |",
        "",
        "Notes on the rows (the machine is shared: earlier runs under a concurrent CI build measured",
        "consume at 378 MB/s and 10k/s p99 at 5.9 ms; these are the numbers of the run above):",
        "- **sync-each latency**: a produce is appended in order and then waits for durability while",
        "  the connection keeps reading; one syncer task group-commits everyone waiting with a single",
        "  `flush()`. A request that arrives just after an fsync started waits for that one and the",
        "  next, so p99 is about two fsyncs of this virtual disk plus queueing; p99.9 shows its fsync",
        "  outliers. The disk's own fsync p99 is not measured here, so the ratio target stays open.",
        "- **1 KiB throughput**: a burst of 1 GB, absorbed partly by the page cache (1 s fsync); a",
        "  sustained 60 s run is still to do.",
        "- **100-byte consume** (msg/s) is bounded by the client's per-message work in the load tool,",
        "  which shares the 2 cores with the broker (broker CPU stays under 0.2 s for 3 M messages).",
    ]
    return "\n".join(lines)


def disturbed_table():
    """Medians of bench-results/disturbed.csv (scripts/bench-disturbed.sh) per broker and load."""
    path = os.path.join(ROOT, "bench-results", "disturbed.csv")
    if not os.path.exists(path):
        return "(no run yet: `make bench-disturbed`)"
    rows = list(csv.DictReader(open(path)))
    groups = {}
    for r in rows:
        groups.setdefault((r["label"], r["disturbance"]), []).append(r)

    def med(rs, k):
        v = sorted(float(r[k]) for r in rs)
        return v[len(v) // 2]

    out = [
        "| broker | other client | runs | p50 ms | p99 ms | p99.9 ms | max ms |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (label, dist), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        what = "creates topics (8 partitions, 10/s)" if dist == "topics" else "none"
        out.append(
            f"| {label} | {what} | {len(rs)} | {med(rs, 'p50_ms'):.2f} | {med(rs, 'p99_ms'):.2f} | "
            f"{med(rs, 'p999_ms'):.2f} | {med(rs, 'max_ms'):.2f} |"
        )
    return "\n".join(out)


def produce_path():
    p = os.path.join(ROOT, "bench-results", "produce-path.md")
    return open(p).read().strip() if os.path.exists(p) else "(not run: `make bench-produce-path`)"


PRODUCE_PATH_NOTES = """What the figures say, honestly:
- **Coalescing works** (A: about 100 client batches per storage append instead of 1) but this
  machine cannot turn it into throughput: 8 librdkafka producers in one process share the two
  cores with the broker and are the bottleneck (the broker uses about half a core), and the old
  path already shared fsyncs through the syncer (0.0007 fsyncs per record), so the issue's
  targets of 5× fewer fsyncs and 3× throughput are not reachable here; measured: 1.04×
  throughput, 0.71× fsyncs per record, 0.89× broker CPU.
- **O_DIRECT saves CPU on large appends** (B: 0.62× broker CPU per GB, the page cache copy and
  its writeback gone) at the same throughput; the client reaches 41% of fio's sequential
  O_DIRECT bandwidth either way (the issue's 80% needs a client that is not sharing the cores).
- **O_DIRECT costs CPU on small appends** (C, 10,000 single-record requests a second: 1.22×
  broker CPU). Each append is a synchronous device write of at least one page, and ext4 makes
  io_uring hand direct writes into fallocated (unwritten) extents to its worker threads (perf:
  16% of the broker's samples in `iou-wrk`). Latency is not worse (p50 0.17× of the old path,
  p99 0.83×; both far above the 2 × fsync p99 target, which librdkafka's own latency exceeds).
- **Reads of recent data come from memory**: under O_DIRECT the page cache does not hold what was
  just written, so each partition keeps its newest batches (`--batch-cache-bytes`, 64 MiB in
  all, ≤ 8 MiB a partition). A tailing consumer (20,000 msg/s over 8 partitions, linger 1 ms,
  `tusk_perf --tail`) sees end-to-end p50 **1.7 ms with the cache, 4.3 ms without it** (reading
  from the device), 1.2 ms on the buffered path. A consumer reading a gigabyte written long
  before reads from the device: 0.75× of the buffered path's rate, where the page cache still
  held the data.
- Since the table's runs, the write stage submits the groups of every partition in a round as
  one ring submission (`Walrus::batch_append_many`). Measured after it, same machine, 2 runs
  each, old (`--storage-writes pwrite --produce-max-group 1`) against new, alternating:
  `cargo bench --bench tusk_perf -- --partitions 8 --size 1024 --duration 20 --linger-ms 5
  --fsync 1000ms --no-consume`: **1.21× and 1.28× throughput** (295→357, 325→416 MB/s),
  **0.59× and 0.57× broker CPU**, p50 latency 0.40× and 0.69×; the tailing run above
  (`--rate 20000 --duration 10 --linger-ms 1 --tail`): broker CPU 3.31 s new, 2.99 s old,
  3.08 s coalesced pwrite (1.11× where the table's run had 2.6×), p50 1.37 / 1.20 / 1.22 ms.
  Not done: writes that do not wait for the device before the next round.
"""


def vs_kafka():
    p = os.path.join(ROOT, "bench-results", "vs-kafka.md")
    quick = open(p).read().strip() if os.path.exists(p) else "(not run: `make bench-vs-kafka`)"
    f = os.path.join(ROOT, "bench-results", "vs-kafka-full.md")
    full = open(f).read().strip() if os.path.exists(f) else "(not run: `make bench-vs-kafka-full`)"
    return f"""{quick}

### The full suite (`make bench-vs-kafka-full`)

`scripts/bench-vs-kafka-full.sh`: the same workloads against Apache Kafka 4.4.0 and Tusk on this
machine, alternating, a fresh broker for every run, client benches/tusk_perf.rs (librdkafka):
1 KiB and 100 B records produced flat out for 60 s (acks=all, 8 partitions) then consumed from
the start; 1 KiB at fixed rates of 1,000 and 10,000 msg/s for 30 s (latency percentiles);
"durable", Kafka with `flush.messages=1` against Tusk's `--fsync sync-each` (both acknowledge
only fsynced writes); broker CPU seconds (/proc) and peak RSS (VmHWM) of each run; the time
until a broker holding 10 GiB answers Metadata for its topic again, after a clean stop and
after kill -9.

{full}

![vs-kafka](bench-results/vs-kafka.png)"""


def main():
    st, disk = storage_table()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    text = f"""# Benchmarks

Regenerate everything with `make bench` (storage benchmark, end-to-end runs, plots, this file).
Machine: {machine()}. Commit {commit}. The machine is shared and noisy: compare ratios within one
run, not absolute numbers across runs.

## Storage: Walrus vs walrus-rust 0.2.0

`make bench-storage` (`cargo bench -p walrus-storage --bench storage_bench`): the same workloads,
same run, each engine in its own child process; 1 KiB entries, batches of 2,000; `WALRUS_DURATION`
seconds per cell. Disk sequential write bandwidth measured in the same run with
`dd bs=1M count=1024 conv=fdatasync`: **{disk} MB/s**.

{st}
Batches go through io_uring with `RWF_NOWAIT` (the default); on this ext4 the kernel refuses non-blocking buffered writes, so after 16 refused batches the ring is bypassed and batches are `pwrite`s (see ARCHITECTURE.md).
The machine was otherwise idle during this run but is shared and noisy: read ratios, not absolutes.

Notes: append/batch_append MB/s above the disk's bandwidth mean the run was short enough for the
page cache to absorb part of it (the 200 ms and none schedules do not wait for the disk).
`cursor_commit` is durable commits per second from 32 threads (Walrus: named cursor, fsynced,
group commit; walrus-rust: `read_next(checkpoint)` under StrictlyAtOnce, its only persisted
cursor). `reopen` is opens per second of a log holding 8 topics × 32 MiB (higher is better).
The mmap backend (Walrus: reads through the mapping, writes are `pwrite`s) is compared with
walrus-rust's mmap mode, whose writes are page-cache copies: there the write ratios are bounded by
this disk (both engines near or above the dd figure), not by the engines.

![writes](bench-results/writes.png) ![reads](bench-results/reads.png) ![scaling](bench-results/scaling.png)

## Restarts

{restart_tables()}

## End to end: Tusk with a real client

`make bench-e2e` (`scripts/bench-e2e.sh`, the load tool `benches/tusk_perf.rs` on the rdkafka
crate / librdkafka 2.12): each row a fresh broker (release build) on this machine, client and
broker sharing its 2 cores; produce N messages to 8 partitions, then consume them all back from
offset 0 with default consumer settings. Latency is from send to delivery report.

{e2e_table()}
![e2e](bench-results/e2e.png)

## Produce latency while the broker does slow work for another client

`make bench-disturbed` (`scripts/bench-disturbed.sh`): 10,000 msg/s of 1 KiB (linger 0,
acks=all, 8 partitions, `--fsync sync-each`) from the load tool while another client creates
topics of 8 partitions, 10 a second (each partition takes a block, so a new 1000 MiB file is
needed every ~12 topics; each creation fsyncs the catalog), and without it; the broker of the
commit before blocking storage work moved off the async workers and made files ahead
(`old`) against this tree (`new`), alternating in one run. Medians over the runs.

{disturbed_table()}

## The produce path: coalescing and O_DIRECT (issue 14)

`make bench-produce-path` (`scripts/bench-produce-path.sh`): the disk measured with fio, then
the issue's three workloads on a fresh broker per run, `old` (one storage write per client
batch, buffered `pwrite`: `--produce-max-group 1 --storage-writes pwrite`), `fallback`
(coalesced, buffered `pwrite`) and `new` (the defaults: coalesced batch appends, O_DIRECT
through io_uring) alternating, medians of 3 rounds; client `benches/tusk_perf.rs`.

{produce_path()}

{PRODUCE_PATH_NOTES}
## Side by side: Tusk vs Apache Kafka

`make bench-vs-kafka` (`scripts/bench-vs-kafka.sh`): Apache Kafka 4.4.0 (the test fixture, a
KRaft single node, default JVM settings but `-Xmx512m`) and Tusk (release build, default
`--fsync 1000ms`) on this machine, both with `group.initial.rebalance.delay.ms=0`, driven by
Kafka's own `kafka-producer-perf-test` (500,000 records of 100 B, 3 partitions, acks=all,
idempotent, as fast as it can) and `kafka-consumer-perf-test` (the same records; its fetch-time
figures, which leave the group join out), alternating Kafka and Tusk for 3 rounds. The perf
tools' JVM shares the 2 cores with the broker under test. Note that Tusk's default fsyncs every
second while Kafka leaves flushing to the OS: Tusk does more for durability here.

{vs_kafka()}

## Targets (issue 7) and what limits them

{targets()}
"""
    open(os.path.join(ROOT, "BENCHMARKS.md"), "w").write(text)
    print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
