#!/usr/bin/env python3
"""Plots the benchmark CSVs in bench-results/ into PNG files.

    plot.py writes|reads|scaling|e2e|all
"""
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RES = os.path.join(ROOT, "bench-results")


def storage():
    return pd.read_csv(os.path.join(RES, "storage.csv"))


def bar(df, title, value, out, ylabel):
    df = df.copy()
    df["case"] = df["workload"] + " t=" + df["topics"].astype(str) + " " + df["schedule"] + " " + df["backend"]
    piv = df.pivot_table(index="case", columns="engine", values=value)
    ax = piv.plot.bar(figsize=(12, 5), rot=30)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    plt.tight_layout()
    plt.savefig(os.path.join(RES, out))
    plt.close()
    print("wrote", os.path.join("bench-results", out))


def writes():
    df = storage()
    bar(df[df.workload.isin(["batch_append", "append"])], "Walrus vs walrus-rust 0.2.0: appends", "mb_per_s", "writes.png", "MB/s")


def reads():
    df = storage()
    bar(df[df.workload == "batch_read"], "Walrus vs walrus-rust 0.2.0: batch reads (page cache)", "mb_per_s", "reads.png", "MB/s")


def scaling():
    df = storage()
    df = df[df.workload == "batch_append"]
    fig, ax = plt.subplots(figsize=(8, 5))
    for (engine, sched, backend), g in df.groupby(["engine", "schedule", "backend"]):
        g = g.sort_values("topics")
        ax.plot(g["topics"], g["mb_per_s"], marker="o", label=f"{engine} {sched} {backend}")
    ax.set_xlabel("topics (one writer thread each)")
    ax.set_ylabel("MB/s")
    ax.set_title("Batch append throughput by writer/topic count")
    ax.legend(fontsize=7)
    plt.tight_layout()
    plt.savefig(os.path.join(RES, "scaling.png"))
    plt.close()
    print("wrote bench-results/scaling.png")


def e2e():
    path = os.path.join(RES, "e2e.csv")
    if not os.path.exists(path):
        print("no e2e.csv yet: run make bench-e2e")
        return
    df = pd.read_csv(path)
    df["case"] = df["label"].fillna("") + " " + df["size"].astype(str) + "B"
    ax = df.set_index("case")[["produce_mb_s", "consume_mb_s"]].plot.bar(figsize=(10, 5), rot=20)
    ax.set_ylabel("MB/s")
    ax.set_title("Tusk end to end (rdkafka client)")
    plt.tight_layout()
    plt.savefig(os.path.join(RES, "e2e.png"))
    plt.close()
    print("wrote bench-results/e2e.png")


def vs_kafka():
    path = os.path.join(RES, "vs-kafka-full.csv")
    if not os.path.exists(path):
        print("no vs-kafka-full.csv yet: run make bench-vs-kafka-full")
        return
    df = pd.read_csv(path)
    med = df.groupby(["workload", "broker"]).median(numeric_only=True).reset_index()
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    panels = [
        ("produce_mb_s", "produce MB/s (higher is better)", lambda w: w.startswith(("produce", "durable"))),
        ("lat_p99_ms", "produce p99 latency ms (lower is better)", lambda w: w.startswith(("latency", "durable"))),
        ("start_ms", "restart ms (lower is better)", lambda w: w.startswith("restart")),
    ]
    for ax, (col, title, keep) in zip(axes, panels):
        sub = med[med.workload.map(keep)]
        if sub.empty:
            ax.set_visible(False)
            continue
        sub.pivot_table(index="workload", columns="broker", values=col).plot.bar(ax=ax, rot=20)
        ax.set_title(title)
    fig.suptitle("Tusk vs Apache Kafka 4.4.0, same machine (make bench-vs-kafka-full)")
    plt.tight_layout()
    plt.savefig(os.path.join(RES, "vs-kafka.png"))
    plt.close()
    print("wrote bench-results/vs-kafka.png")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    for name, fn in [("writes", writes), ("reads", reads), ("scaling", scaling), ("e2e", e2e), ("vs-kafka", vs_kafka)]:
        if what in (name, "all"):
            fn()
