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
