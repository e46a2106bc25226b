"""Durability through real crashes: acknowledged records survive `kill -9` at the same offsets
(under every fsync schedule a process crash loses nothing acknowledged), and topics, configs and
committed offsets survive restarts."""

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from test_confluent import consume_n


@pytest.mark.parametrize("fsync", ["1000ms", "sync-each", "none"])
def test_kill9_keeps_every_acknowledged_record(broker_factory, fsync):
    b = broker_factory(["--fsync", fsync, "--num-partitions", "3"])
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 1})
    acked = {}

    def cb(err, msg):
        if err is None:
            acked[(msg.partition(), msg.offset())] = msg.value()

    for i in range(3000):
        p.produce("rec", value=f"r{i}".encode(), partition=i % 3, on_delivery=cb)
        if i % 500 == 0:
            p.poll(0)
    p.flush(30)
    assert len(acked) == 3000
    b.kill9()
    b.start()
    got = consume_n(b.bootstrap, "rec", [0, 1, 2], 3000)
    found = {(m.partition(), m.offset()): m.value() for m in got}
    assert found == acked


def test_metadata_configs_and_offsets_survive_restart(broker_factory):
    b = broker_factory()
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    a.create_topics([NewTopic("persist", num_partitions=5, replication_factor=1, config={"retention.ms": "123456"})])["persist"].result(30)
    p = Producer({"bootstrap.servers": b.bootstrap})
    for i in range(10):
        p.produce("persist", value=b"v", partition=i % 5)
    p.flush(10)
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "persist-g", "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition("persist", 2, 1)], asynchronous=False)
    c.close()
    b.kill9()
    b.start()
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    md = a.list_topics(timeout=10)
    assert len(md.topics["persist"].partitions) == 5
    cfg = a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "persist")])
    entries = list(cfg.values())[0].result(10)
    assert entries["retention.ms"].value == "123456"
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "persist-g"})
    got = c.committed([TopicPartition("persist", 2)], timeout=10)
    assert got[0].offset == 1
    c.close()


def test_sigterm_is_graceful(broker_factory):
    b = broker_factory()
    p = Producer({"bootstrap.servers": b.bootstrap})
    p.produce("graceful", value=b"x")
    p.flush(10)
    assert b.stop() == 0
    assert "stopped; all data flushed" in b.read_log()


def _loaded_line(b):
    """The last 'partitions loaded' log line's fields."""
    import re
    line = [l for l in b.read_log_since_start().splitlines() if "partitions loaded" in l][-1]
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def test_restart_reads_partition_snapshots_and_only_the_tail(broker_factory):
    b = broker_factory(["--num-partitions", "3"])
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    a.create_topics([NewTopic("snap", num_partitions=3, replication_factor=1)])["snap"].result(30)
    p = Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for i in range(3000):
        p.produce("snap", key=f"k{i}", value=f"v{i}".encode(), partition=i % 3, timestamp=1_000_000 + i)
    p.flush(30)
    # A clean stop saves snapshots: the next start scans nothing.
    b.stop()
    b.start()
    loaded = _loaded_line(b)
    assert loaded["from_snapshots"] == 3 and loaded["batches_scanned"] == 0, loaded
    assert len(consume_n(b.bootstrap, "snap", [0, 1, 2], 3000)) == 3000

    # More records and a DeleteRecords after the snapshot, then a crash: the snapshot plus the
    # tail give the same state a full scan would.
    for i in range(3000, 4500):
        p.produce("snap", key=f"k{i}", value=f"v{i}".encode(), partition=i % 3, timestamp=1_000_000 + i)
    p.flush(30)
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in a.delete_records([TopicPartition("snap", 0, 100)]).values():
        f.result(10)
    b.kill9()
    b.start()
    loaded = _loaded_line(b)
    assert loaded["from_snapshots"] == 3 and loaded["batches_scanned"] > 0, loaded
    got = consume_n(b.bootstrap, "snap", [0, 1, 2], 4500 - 100, **{"auto.offset.reset": "earliest"})
    assert len(got) == 4400
    by_part = {}
    for m in got:
        by_part.setdefault(m.partition(), []).append((m.offset(), m.value().decode()))
    assert sorted(by_part) == [0, 1, 2]
    for part, rows in by_part.items():
        offsets = [o for o, _ in rows]
        assert offsets == list(range(100 if part == 0 else 0, 1500)), part
        assert [v for _, v in rows] == [f"v{i}" for i in range(4500) if i % 3 == part][offsets[0]:]
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "snap-t"})
    lo, hi = c.get_watermark_offsets(TopicPartition("snap", 1), timeout=10)
    assert (lo, hi) == (0, 1500)
    # ListOffsets by timestamp uses the restored index.
    tp = c.offsets_for_times([TopicPartition("snap", 1, 1_000_000 + 3001)], timeout=10)[0]
    assert tp.offset == 1000  # record 3001 is the 1001st of partition 1
    c.close()
    # The idempotent producer's state survived too: it keeps producing without errors.
    errors = []
    for i in range(10):
        p.produce("snap", value=b"after", partition=i % 3, on_delivery=lambda e, m: e and errors.append(e))
    p.flush(30)
    assert not errors


def test_full_blocks_stay_readable_from_their_first_record(broker_factory):
    """Regression: checkpoints of nearly full 10 MiB Walrus blocks once overwrote the block's
    first entry (found by the sync-each latency benchmark). Fill more than one block of a
    partition slowly enough that every few hundred records a checkpoint is written (at most
    every 200 ms), read everything, restart, read again."""
    import time
    b = broker_factory(["--fsync", "sync-each"])
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic("full", num_partitions=1, replication_factor=1)])["full"].result(30)
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0, "batch.num.messages": 1})
    n = 12_000
    for i in range(n):
        p.produce("full", value=f"{i:08d}".encode() * 128, partition=0)
        # ~9,500 one-record batches fill a block: checkpoint often around there.
        if i >= 8_000 and i % 200 == 0:
            p.flush(30)
            time.sleep(0.22)
        elif i % 1000 == 0:
            p.poll(0)
    p.flush(30)
    for _ in range(2):
        got = consume_n(b.bootstrap, "full", [0], n, **{"fetch.max.bytes": 1 << 20})
        assert [m.offset() for m in got] == list(range(n))
        assert got[0].value() == b"00000000" * 128 and got[-1].value() == f"{n - 1:08d}".encode() * 128
        b.restart()
