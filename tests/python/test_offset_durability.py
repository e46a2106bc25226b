"""Committed offsets are stored verbatim, whatever the log holds, and survive every restart.

Kafka keeps any committed offset as given: on an empty partition, beyond the log end (offset
resets and MirrorMaker 2 commit ahead of the data), below the log start after DeleteRecords or
retention. Each case is committed, read back, and read back again after SIGTERM and after kill -9
under each fsync schedule.
"""

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic


def committed(bootstrap, group, parts):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(t, p) for t, p in parts], timeout=15)
        return {(tp.topic, tp.partition): (tp.offset, tp.metadata) for tp in got}
    finally:
        c.close()


def commit(bootstrap, group, offsets):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(t, p, o, metadata=m) for (t, p), (o, m) in offsets.items()]
        res = c.commit(offsets=tps, asynchronous=False)
        assert all(tp.error is None for tp in res), res
    finally:
        c.close()


def wait_until(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("fsync", ["1000ms", "sync-each", "none"])
def test_every_committed_offset_survives_restarts(broker_factory, fsync):
    b = broker_factory(["--fsync", fsync, "--retention-check-interval-ms", "200"])
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    fs = a.create_topics([
        NewTopic("empty", num_partitions=2, replication_factor=1),
        NewTopic("data", num_partitions=3, replication_factor=1),
        NewTopic("aged", num_partitions=1, replication_factor=1,
                 config={"retention.ms": "100000000"}),
    ])
    for f in fs.values():
        f.result(30)
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0})
    for i in range(30):
        p.produce("data", value=f"v{i}".encode(), partition=i % 3)
        p.produce("aged", value=f"old{i}".encode(), partition=0, timestamp=1_000_000 + i)
    assert p.flush(30) == 0
    # DeleteRecords moves data/1's log start to 8, past the commit made there next.
    for f in a.delete_records([TopicPartition("data", 1, 8)]).values():
        f.result(15)

    want = {
        ("empty", 0): (0, "m"),          # empty partition, offset 0 with metadata
        ("empty", 1): (100, ""),         # empty partition, ahead of the (absent) data
        ("data", 0): (5, "below the end"),
        ("data", 1): (3, "below the log start"),
        ("data", 2): (1_000_000, "far beyond the end"),
        ("aged", 0): (20, "retention will empty this partition"),
    }
    commit(b.bootstrap, "g", want)
    assert committed(b.bootstrap, "g", want) == want

    # Retention empties aged/0 (its records are from 1970): log start reaches the log end.
    fut = a.alter_configs([ConfigResource("topic", "aged", set_config={"retention.ms": "1000"})])
    for f in fut.values():
        f.result(15)
    probe = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "probe"})

    def emptied():
        lo, hi = probe.get_watermark_offsets(TopicPartition("aged", 0), timeout=5)
        return lo == hi == 30

    wait_until(emptied, 20, "retention to empty aged/0")
    probe.close()
    assert committed(b.bootstrap, "g", want) == want

    b.stop()
    b.start()
    assert committed(b.bootstrap, "g", want) == want, "after SIGTERM"

    # A second generation of commits (one of them moving back), then kill -9.
    want2 = dict(want)
    want2[("empty", 0)] = (7, "second")
    want2[("data", 2)] = (2, "moved back")
    commit(b.bootstrap, "g", {k: want2[k] for k in [("empty", 0), ("data", 2)]})
    if fsync == "none":
        # Under `none` only a process crash is survived, which is what kill -9 is.
        pass
    b.kill9()
    b.start()
    assert committed(b.bootstrap, "g", want2) == want2, "after kill -9"
    b.kill9()
    b.start()
    assert committed(b.bootstrap, "g", want2) == want2, "after a second kill -9"


def test_offsets_of_a_deleted_empty_topic_do_not_come_back(broker_factory):
    """Deleting a topic drops its offsets, also where no record was ever written, so a topic made
    again under the same name starts without them (as in Kafka), across restarts too."""
    b = broker_factory()
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    a.create_topics([NewTopic("gone", num_partitions=1, replication_factor=1)])["gone"].result(30)
    commit(b.bootstrap, "g", {("gone", 0): (42, "x")})
    assert committed(b.bootstrap, "g", [("gone", 0)])[("gone", 0)] == (42, "x")
    a.delete_topics(["gone"])["gone"].result(30)

    def recreated():
        try:
            a.create_topics([NewTopic("gone", num_partitions=1, replication_factor=1)])["gone"].result(10)
            return True
        except Exception:
            return False

    wait_until(recreated, 20, "the topic to be made again")
    assert committed(b.bootstrap, "g", [("gone", 0)])[("gone", 0)][0] == -1001
    b.kill9()
    b.start()
    assert committed(b.bootstrap, "g", [("gone", 0)])[("gone", 0)][0] == -1001
