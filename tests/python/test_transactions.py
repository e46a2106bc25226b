"""Transactions (KIP-98) through confluent-kafka: commit and abort as read_committed and
read_uncommitted consumers see them, the last stable offset, exactly-once consume-transform-
produce with group offsets, fencing, and transactions across kill -9."""

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from test_confluent import create


def txn_producer(bootstrap, txn_id, **conf):
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, **conf})
    p.init_transactions(30)
    return p


def drain(bootstrap, topic, partitions, isolation, quiet_s=2.0, timeout=30):
    """Every record visible to a consumer with this isolation level, read until the end."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "drain-" + uuid.uuid4().hex,
                  "enable.auto.commit": False, "isolation.level": isolation,
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    out, eof = [], set()
    deadline = time.time() + timeout
    last = time.time()
    while time.time() < deadline and (len(eof) < len(partitions) or time.time() - last < quiet_s):
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                continue
            raise KafkaException(m.error())
        eof.discard(m.partition())
        last = time.time()
        out.append(m)
    positions = {tp.partition: tp.offset for tp in c.position([TopicPartition(topic, p) for p in partitions])}
    c.close()
    return out, positions


def values(msgs):
    return sorted(m.value().decode() for m in msgs)


def test_commit_and_abort_as_each_isolation_level_sees_them(broker):
    topic = "txn-basic"
    create(broker.bootstrap, topic, 2)
    p = txn_producer(broker.bootstrap, "txn-basic-id")
    p.begin_transaction()
    for i in range(10):
        p.produce(topic, value=f"committed-{i}".encode(), partition=i % 2)
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(5):
        p.produce(topic, value=f"aborted-{i}".encode(), partition=i % 2)
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    p.produce(topic, value=b"committed-last", partition=0)
    p.commit_transaction(30)

    committed, pos = drain(broker.bootstrap, topic, [0, 1], "read_committed")
    assert values(committed) == sorted([f"committed-{i}" for i in range(10)] + ["committed-last"])
    # 16 records and 3 markers on partition 0+1: positions pass the markers.
    assert pos[0] + pos[1] == 16 + 5
    everything, _ = drain(broker.bootstrap, topic, [0, 1], "read_uncommitted")
    assert len(everything) == 16
    assert {m.value().decode() for m in everything} >= {f"aborted-{i}" for i in range(5)}


def test_open_transaction_holds_back_read_committed(broker):
    topic = "txn-lso"
    create(broker.bootstrap, topic, 1)
    plain = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(10):
        plain.produce(topic, value=b"plain", partition=0)
    plain.flush(30)

    p = txn_producer(broker.bootstrap, "txn-lso-id")
    p.begin_transaction()
    for i in range(7):
        p.produce(topic, value=b"open", partition=0)
    p.flush(30)

    def hw(isolation):
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "wm", "isolation.level": isolation})
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
        c.close()
        return hi

    assert hw("read_committed") == 10, "the last stable offset stops at the open transaction"
    assert hw("read_uncommitted") == 17
    seen, _ = drain(broker.bootstrap, topic, [0], "read_committed", quiet_s=1.0)
    assert len(seen) == 10 and all(m.value() == b"plain" for m in seen)

    p.commit_transaction(30)
    assert hw("read_committed") == hw("read_uncommitted") == 18
    seen, _ = drain(broker.bootstrap, topic, [0], "read_committed")
    assert len(seen) == 17


def test_consume_transform_produce_commits_offsets_with_the_output(broker):
    src, dst, group = "txn-in", "txn-out", "txn-ctp"
    create(broker.bootstrap, src, 1)
    create(broker.bootstrap, dst, 1)
    plain = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(20):
        plain.produce(src, value=f"{i}".encode(), partition=0)
    plain.flush(30)

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    c.subscribe([src])
    p = txn_producer(broker.bootstrap, "txn-ctp-id")

    def step(n, commit):
        got = []
        deadline = time.time() + 30
        while len(got) < n and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m)
        assert len(got) == n
        p.begin_transaction()
        for m in got:
            p.produce(dst, value=b"x" + m.value(), partition=0)
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
        return got

    step(10, commit=True)
    committed = c.committed([TopicPartition(src, 0)], timeout=10)
    assert committed[0].offset == 10
    step(10, commit=False)
    committed = c.committed([TopicPartition(src, 0)], timeout=10)
    assert committed[0].offset == 10, "an aborted transaction commits no offsets"
    c.close()

    out, _ = drain(broker.bootstrap, dst, [0], "read_committed")
    assert values(out) == sorted(f"x{i}" for i in range(10))


def test_new_instance_fences_the_old_one(broker):
    topic = "txn-fence"
    create(broker.bootstrap, topic, 1)
    p1 = txn_producer(broker.bootstrap, "txn-fence-id")
    p1.begin_transaction()
    p1.produce(topic, value=b"zombie", partition=0)
    p1.flush(30)
    p2 = txn_producer(broker.bootstrap, "txn-fence-id")
    with pytest.raises(KafkaException) as e:
        p1.commit_transaction(30)
    assert e.value.args[0].fatal(), e.value.args[0]
    p2.begin_transaction()
    p2.produce(topic, value=b"live", partition=0)
    p2.commit_transaction(30)
    seen, _ = drain(broker.bootstrap, topic, [0], "read_committed")
    assert values(seen) == ["live"]


def test_timed_out_transaction_is_aborted(broker):
    topic = "txn-timeout"
    create(broker.bootstrap, topic, 1)
    p = txn_producer(broker.bootstrap, "txn-timeout-id", **{"transaction.timeout.ms": 2000})
    p.begin_transaction()
    p.produce(topic, value=b"forgotten", partition=0)
    p.flush(30)
    time.sleep(4)
    with pytest.raises(KafkaException):
        p.commit_transaction(10)
    seen, pos = drain(broker.bootstrap, topic, [0], "read_committed")
    assert seen == [] and pos[0] == 2, "the record is aborted and the marker passed"


@pytest.mark.parametrize("fsync", ["sync-each", "1000ms"])
def test_transactions_across_kill9(broker_factory, fsync):
    b = broker_factory(["--fsync", fsync])
    topic = "txn-crash"
    create(b.bootstrap, topic, 2)
    p = txn_producer(b.bootstrap, "txn-crash-id", **{"transaction.timeout.ms": 3000})
    p.begin_transaction()
    for i in range(10):
        p.produce(topic, value=f"done-{i}".encode(), partition=i % 2)
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(6):
        p.produce(topic, value=f"open-{i}".encode(), partition=i % 2)
    p.flush(30)
    if fsync != "sync-each":
        time.sleep(1.5)  # past one fsync interval: the open records are on disk too
    b.kill9()
    b.start()
    # The committed transaction survived; the open one is aborted once its timeout passes and
    # then no longer holds back read_committed consumers.
    deadline = time.time() + 30
    while True:
        seen, pos = drain(b.bootstrap, topic, [0, 1], "read_committed", quiet_s=0.5)
        if pos[0] + pos[1] == 10 + 6 + 4 or time.time() > deadline:
            break
        time.sleep(0.5)
    assert values(seen) == sorted(f"done-{i}" for i in range(10))
    assert pos[0] + pos[1] == 10 + 6 + 4, "two commit and two abort markers"
    p2 = txn_producer(b.bootstrap, "txn-crash-id")
    p2.begin_transaction()
    p2.produce(topic, value=b"after", partition=0)
    p2.commit_transaction(30)
    seen, _ = drain(b.bootstrap, topic, [0, 1], "read_committed")
    assert len(seen) == 11


def test_transaction_admin_apis_through_kafka_python(broker):
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KTP
    topic = "txn-admin"
    create(broker.bootstrap, topic, 2)
    p = txn_producer(broker.bootstrap, "txn-admin-id")
    p.begin_transaction()
    p.produce(topic, value=b"a", partition=0)
    p.produce(topic, value=b"b", partition=0)
    p.produce(topic, value=b"c", partition=1)
    p.flush(10)
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        listed = [t for per_broker in a.list_transactions().values() for t in per_broker]
        assert [(t.transactional_id, t.state.value) for t in listed] == [("txn-admin-id", "Ongoing")]
        assert a.list_transactions(state_filters=["CompleteCommit"]) == {1: []}
        desc = a.describe_transactions(["txn-admin-id"])["txn-admin-id"]
        assert desc.state.value == "Ongoing", desc
        assert {(tp.topic, tp.partition) for tp in desc.topic_partitions} == {(topic, 0), (topic, 1)}, desc
        prod = a.describe_producers([KTP(topic, 0)])[KTP(topic, 0)]
        active = prod.active_producers
        assert len(active) == 1 and active[0].current_transaction_start_offset == 0, prod
        assert a.find_hanging_transactions() == [] or not a.find_hanging_transactions()
    finally:
        a.close()
    p.commit_transaction(10)


def test_transaction_timeout_above_the_maximum_is_refused(broker):
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "txn-too-long",
                  "transaction.timeout.ms": 900_001})
    with pytest.raises(KafkaException) as e:
        p.init_transactions(10)
    assert e.value.args[0].code() == KafkaError.INVALID_TRANSACTION_TIMEOUT, e.value.args[0]
