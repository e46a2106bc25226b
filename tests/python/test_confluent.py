"""confluent-kafka (current librdkafka) against Tusk: compression, idempotence, limits, groups."""

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def produce_all(bootstrap, topic, msgs, **conf):
    p = Producer({"bootstrap.servers": bootstrap, **conf})
    errors = []
    offsets = []

    def cb(err, msg):
        if err:
            errors.append(err)
        else:
            offsets.append((msg.partition(), msg.offset()))

    for m in msgs:
        p.produce(topic, on_delivery=cb, **m)
    p.flush(30)
    return errors, offsets


def consume_n(bootstrap, topic, partitions, n, timeout=30, **conf):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-" + uuid.uuid4().hex,
                  "enable.auto.commit": False, **conf})
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    out = []
    deadline = time.time() + timeout
    while len(out) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise KafkaException(m.error())
        out.append(m)
    c.close()
    return out


def create(bootstrap, topic, partitions, config=None):
    a = AdminClient({"bootstrap.servers": bootstrap})
    fs = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})])
    fs[topic].result(30)


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_compression_passes_through(broker, codec):
    topic = f"cf-comp-{codec}"
    create(broker.bootstrap, topic, 3)
    msgs = [{"key": f"k{i}", "value": (f"value-{i}-" * 20).encode(), "partition": i % 3} for i in range(600)]
    errors, _ = produce_all(broker.bootstrap, topic, msgs, **{"compression.type": codec, "linger.ms": 20})
    assert not errors
    got = consume_n(broker.bootstrap, topic, [0, 1, 2], 600)
    by_part = {}
    for m in got:
        by_part.setdefault(m.partition(), []).append((m.key().decode(), m.value()))
    for p in range(3):
        want = [(m["key"], m["value"]) for m in msgs if m["partition"] == p]
        assert by_part[p] == want
        assert [m.offset() for m in got if m.partition() == p] == list(range(len(want)))


def test_many_topics_and_partitions(broker):
    topics = [f"cf-many-{i}" for i in range(10)]
    for t in topics:
        create(broker.bootstrap, t, 8)
    msgs = [{"value": f"{t}:{p}:{i}".encode(), "partition": p, "topic_": t} for t in topics for p in range(8) for i in range(5)]
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for m in msgs:
        p.produce(m["topic_"], value=m["value"], partition=m["partition"])
    assert p.flush(30) == 0
    for t in topics:
        got = consume_n(broker.bootstrap, t, range(8), 40)
        assert sorted(m.value().decode() for m in got) == sorted(f"{t}:{p}:{i}" for p in range(8) for i in range(5))


def test_idempotent_producer(broker):
    create(broker.bootstrap, "cf-idem", 2)
    msgs = [{"value": f"i{i}".encode(), "partition": i % 2} for i in range(2000)]
    errors, offsets = produce_all(broker.bootstrap, "cf-idem", msgs, **{"enable.idempotence": True, "linger.ms": 2, "batch.num.messages": 50})
    assert not errors
    got = consume_n(broker.bootstrap, "cf-idem", [0, 1], 2000)
    assert len(got) == 2000
    for part in (0, 1):
        vals = [m.value().decode() for m in got if m.partition() == part]
        assert vals == [f"i{i}" for i in range(part, 2000, 2)]


def test_max_message_bytes(broker):
    create(broker.bootstrap, "cf-max", 1, {"max.message.bytes": "100000"})
    near = b"x" * 99_000
    errors, _ = produce_all(broker.bootstrap, "cf-max", [{"value": near}], **{"compression.type": "none", "message.max.bytes": 2_000_000})
    assert not errors
    errors, _ = produce_all(broker.bootstrap, "cf-max", [{"value": b"y" * 150_000}], **{"compression.type": "none", "message.max.bytes": 2_000_000})
    assert errors and errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    got = consume_n(broker.bootstrap, "cf-max", [0], 1)
    assert got[0].value() == near


def test_offsets_for_times(broker):
    create(broker.bootstrap, "cf-times", 1)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(10):
        p.produce("cf-times", value=b"t%d" % i, timestamp=1_000_000 + i * 1000)
        p.flush()
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "t"})
    res = c.offsets_for_times([TopicPartition("cf-times", 0, 1_004_500)], 10)
    assert res[0].offset == 5
    res = c.offsets_for_times([TopicPartition("cf-times", 0, 9_999_999_999)], 10)
    assert res[0].offset == -1
    lo, hi = c.get_watermark_offsets(TopicPartition("cf-times", 0), 10)
    assert (lo, hi) == (0, 10)
    c.close()


def group_consumer(bootstrap, group, **conf):
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, **conf})


def wait_assignment(consumers, total, timeout=40):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for c in consumers:
            c.poll(0.1)
        parts = [sorted(tp.partition for tp in c.assignment()) for c in consumers]
        if sum(len(p) for p in parts) == total and all(parts):
            return parts
    raise AssertionError(f"no full assignment: {[c.assignment() for c in consumers]}")


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_three_consumers_share_six_partitions(broker, strategy):
    create(broker.bootstrap, "cf-share", 6)
    cs = [group_consumer(broker.bootstrap, f"share-{strategy}", **{"partition.assignment.strategy": strategy}) for _ in range(3)]
    for c in cs:
        c.subscribe(["cf-share"])
    parts = wait_assignment(cs, 6)
    flat = [p for ps in parts for p in ps]
    assert sorted(flat) == list(range(6)), parts
    # One leaves: the other two take over all six partitions.
    cs[2].close()
    parts = wait_assignment(cs[:2], 6)
    assert sorted(p for ps in parts for p in ps) == list(range(6))
    for c in cs[:2]:
        c.close()


def test_manual_commits_survive_rebalance_and_restart(broker):
    create(broker.bootstrap, "cf-commit", 4)
    msgs = [{"value": f"c{i}".encode(), "partition": i % 4} for i in range(400)]
    errors, _ = produce_all(broker.bootstrap, "cf-commit", msgs)
    assert not errors
    seen = set()
    c = group_consumer(broker.bootstrap, "commit-g")
    c.subscribe(["cf-commit"])
    deadline = time.time() + 30
    while len(seen) < 200 and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        seen.add(m.value().decode())
        c.commit(message=m, asynchronous=False)
    c.close()
    broker.restart()
    c = group_consumer(broker.bootstrap, "commit-g")
    c.subscribe(["cf-commit"])
    deadline = time.time() + 40
    while len(seen) < 400 and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        seen.add(m.value().decode())
    c.close()
    assert seen == {f"c{i}" for i in range(400)}


def test_static_member_keeps_partitions(broker):
    create(broker.bootstrap, "cf-static", 4)
    conf = {"group.instance.id": "inst-a", "session.timeout.ms": 10000}
    a = group_consumer(broker.bootstrap, "static-g", **conf)
    b = group_consumer(broker.bootstrap, "static-g", **{"group.instance.id": "inst-b"})
    a.subscribe(["cf-static"])
    b.subscribe(["cf-static"])
    before = wait_assignment([a, b], 4)
    gen_a = a.consumer_group_metadata()
    # Restart member a within the session timeout (close without leaving: static members don't
    # send LeaveGroup).
    a.close()
    a = group_consumer(broker.bootstrap, "static-g", **conf)
    a.subscribe(["cf-static"])
    after = wait_assignment([a, b], 4)
    assert after == before
    a.close()
    b.close()
    assert gen_a is not None


def test_acl_apis_answer_security_disabled_like_kafka_without_an_authorizer(broker):
    from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                       AclPermissionType, ResourcePatternType, ResourceType)
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    binding = AclBinding(ResourceType.TOPIC, "t", ResourcePatternType.LITERAL, "User:alice", "*",
                         AclOperation.READ, AclPermissionType.ALLOW)
    filt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                            AclOperation.ANY, AclPermissionType.ANY)
    for fut in [a.create_acls([binding])[binding], a.delete_acls([filt])[filt]]:
        with pytest.raises(KafkaException) as e:
            fut.result(10)
        assert e.value.args[0].code() == KafkaError.SECURITY_DISABLED, e.value.args[0]
    # librdkafka drops DescribeAcls' top-level error code and reports no ACLs.
    assert a.describe_acls(filt).result(10) == []
