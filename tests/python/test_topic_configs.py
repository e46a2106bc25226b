"""Topic configs that change behaviour, through confluent-kafka: LogAppendTime, retention.ms
enforced in the background, DeleteRecords moving the log start."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME
from confluent_kafka.admin import AdminClient, NewTopic

from test_confluent import consume_n


def test_log_append_time_replaces_client_timestamps(broker):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic("lat", 1, 1, config={"message.timestamp.type": "LogAppendTime"})])["lat"].result(10)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    before = int(time.time() * 1000)
    p.produce("lat", value=b"old", timestamp=1_000)
    p.flush(10)
    m = consume_n(broker.bootstrap, "lat", [0], 1)[0]
    kind, ts = m.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME
    assert before - 1000 <= ts <= int(time.time() * 1000) + 1000


def test_retention_ms_drops_old_batches(broker_factory):
    b = broker_factory(["--retention-check-interval-ms", "200"])
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    a.create_topics([NewTopic("ret", 1, 1, config={"retention.ms": "60000"})])["ret"].result(10)
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0})
    old = int(time.time() * 1000) - 3_600_000
    for i in range(5):
        p.produce("ret", value=b"old%d" % i, timestamp=old + i)
        p.flush(10)
    p.produce("ret", value=b"new")
    p.flush(10)
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "ret"})
    deadline = time.time() + 10
    lo = 0
    while time.time() < deadline:
        lo, hi = c.get_watermark_offsets(TopicPartition("ret", 0), 5, cached=False)
        if lo == 5:
            break
        time.sleep(0.2)
    c.close()
    assert (lo, hi) == (5, 6), "the five expired batches are gone, the fresh one stays"
    got = consume_n(b.bootstrap, "ret", [0], 1, **{"auto.offset.reset": "earliest"})
    assert got[0].value() == b"new"


def test_delete_records_moves_log_start(broker):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic("delrec", 1, 1)])["delrec"].result(10)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(10):
        p.produce("delrec", value=b"%d" % i)
        p.flush(10)
    fs = a.delete_records([TopicPartition("delrec", 0, 4)])
    res = list(fs.values())[0].result(10)
    assert res.low_watermark == 4
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "d"})
    assert c.get_watermark_offsets(TopicPartition("delrec", 0), 5, cached=False) == (4, 10)
    c.close()


def test_compacted_topics_require_keys_and_skip_time_retention(broker_factory):
    b = broker_factory(["--retention-check-interval-ms", "200"])
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    a.create_topics([NewTopic("cmp", 1, 1, config={"cleanup.policy": "compact", "retention.ms": "1000"})])["cmp"].result(10)
    # One record per batch: only the keyless ones fail, with INVALID_RECORD.
    p = Producer({"bootstrap.servers": b.bootstrap, "batch.num.messages": 1, "linger.ms": 0})
    results = {}

    def cb(err, msg):
        results[msg.value()] = err.name() if err else "ok"

    for i in range(10):
        key = None if i % 3 == 0 else f"k{i}"
        p.produce("cmp", key=key, value=f"v{i}".encode(), on_delivery=cb)
    p.flush(20)
    assert results == {f"v{i}".encode(): ("INVALID_RECORD" if i % 3 == 0 else "ok") for i in range(10)}
    # compact without delete: retention.ms does not drop anything.
    time.sleep(2)
    got = consume_n(b.bootstrap, "cmp", [0], 6, timeout=10)
    assert [m.value() for m in got] == [f"v{i}".encode() for i in range(10) if i % 3]
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "cmp-wm"})
    assert c.get_watermark_offsets(TopicPartition("cmp", 0), timeout=10) == (0, 6)
    c.close()


def test_replication_factor_above_one_needs_the_flag(broker_factory):
    from confluent_kafka import KafkaException
    plain = broker_factory()
    a = AdminClient({"bootstrap.servers": plain.bootstrap})
    try:
        a.create_topics([NewTopic("rf3", 1, 3)])["rf3"].result(10)
        raise AssertionError("replication factor 3 accepted by one broker")
    except KafkaException as e:
        assert e.args[0].name() == "INVALID_REPLICATION_FACTOR", e
    lenient = broker_factory(["--accept-replication-factor", "3"])
    a = AdminClient({"bootstrap.servers": lenient.bootstrap})
    a.create_topics([NewTopic("rf3", 1, 3)])["rf3"].result(10)
    md = a.list_topics("rf3", timeout=10)
    assert [len(p.replicas) for p in md.topics["rf3"].partitions.values()] == [1]
