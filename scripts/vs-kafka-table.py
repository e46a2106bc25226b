#!/usr/bin/env python3
"""The Tusk/Kafka table of `scripts/bench-vs-kafka-full.sh`: medians per (workload, figure) over
the rounds, Tusk/Kafka ratios, and where Kafka wins, as Markdown.

    vs-kafka-table.py bench-results/vs-kafka-full.csv
"""
import csv
import statistics
import subprocess
import sys

# (column, label, higher is better)
FIGURES = [
    ("produce_msg_s", "produce msg/s", True),
    ("produce_mb_s", "produce MB/s", True),
    ("lat_p50_ms", "produce latency p50 ms", False),
    ("lat_p99_ms", "produce latency p99 ms", False),
    ("lat_p999_ms", "produce latency p99.9 ms", False),
    ("consume_msg_s", "consume msg/s", True),
    ("consume_mb_s", "consume MB/s", True),
    ("cpu_s", "broker CPU s", False),
    ("rss_peak_mib", "broker peak RSS MiB", False),
    ("start_ms", "restart until Metadata lists the topic, ms", False),
]


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def main(path):
    rows = list(csv.DictReader(open(path)))
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    rounds = len({r["round"] for r in rows})
    out = [f"| workload | figure (median of {rounds}) | Apache Kafka 4.4.0 | Tusk | Tusk / Kafka |",
           "| --- | --- | --- | --- | --- |"]
    kafka_wins = []
    for w in workloads:
        for col, label, higher in FIGURES:
            # A fresh run's start time includes clearing the previous run's data: only the
            # restart rows time a start.
            if col == "start_ms" and not w.startswith("restart"):
                continue
            vals = {}
            for b in ("kafka", "tusk"):
                xs = [num(r[col]) for r in rows if r["workload"] == w and r["broker"] == b]
                xs = [x for x in xs if x is not None and x > 0]
                vals[b] = statistics.median(xs) if xs else None
            k, t = vals["kafka"], vals["tusk"]
            if k is None or t is None:
                continue
            ratio = t / k
            out.append(f"| {w} | {label} | {k:g} | {t:g} | {ratio:.2f} |")
            if (higher and ratio < 1) or (not higher and ratio > 1):
                kafka_wins.append(f"{w}: {label} ({ratio:.2f})")
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    out.append("")
    out.append(f"Machine: {cores} cores; client: benches/tusk_perf.rs (librdkafka) on the same machine;"
               " a fresh broker per run, Kafka and Tusk alternating. Durable: Kafka with"
               " flush.messages=1 against Tusk's --fsync sync-each; otherwise each broker's default"
               " (Kafka leaves flushing to the OS, Tusk fsyncs every second).")
    out.append("")
    out.append("Where Kafka wins: " + ("; ".join(kafka_wins) if kafka_wins else "nowhere in this run") + ".")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench-results/vs-kafka-full.csv")
