"""kafka-python (pure Python, an independent protocol implementation) against Tusk."""

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata


def test_round_trip_keys_nulls_headers(broker):
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    sent = []
    for i in range(300):
        key = None if i % 7 == 0 else f"k{i}".encode()
        value = None if i % 11 == 0 and key is not None else f"v{i}".encode() * (i % 5 + 1)
        headers = [("h", f"{i}".encode())] if i % 3 == 0 else []
        p.send("kp-rt", key=key, value=value, headers=headers, partition=0)
        sent.append((key, value, headers))
    p.flush()
    p.close()
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000)
    c.assign([TopicPartition("kp-rt", 0)])
    got = [(m.key, m.value, list(m.headers)) for m in c]
    c.close()
    assert got == sent


def test_admin_topics_configs_partitions(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    a.create_topics([NewTopic("kp-admin", num_partitions=3, replication_factor=1, topic_configs={"retention.ms": "3600000"})])
    with pytest.raises(TopicAlreadyExistsError):
        a.create_topics([NewTopic("kp-admin", num_partitions=1, replication_factor=1)])
    assert "kp-admin" in a.list_topics()
    res = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "kp-admin")])
    text = str(res)
    assert "retention.ms" in text and "3600000" in text
    a.create_partitions({"kp-admin": NewPartitions(total_count=5)})
    desc = a.describe_topics(["kp-admin"])
    assert len(desc[0]["partitions"]) == 5
    a.delete_topics(["kp-admin"])
    time.sleep(0.2)
    assert "kp-admin" not in a.list_topics()
    a.close()


def test_group_consumer_and_admin_views(broker):
    p = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for i in range(50):
        p.send("kp-group", f"m{i}".encode(), partition=0)
    p.flush()
    c = KafkaConsumer(
        "kp-group", bootstrap_servers=broker.bootstrap, group_id="kp-g",
        auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=8000,
        session_timeout_ms=6000, heartbeat_interval_ms=1000,
    )
    got = []
    for m in c:
        got.append(m.value.decode())
        if len(got) == 50:
            break
    assert got == [f"m{i}" for i in range(50)]
    c.commit({TopicPartition("kp-group", 0): OffsetAndMetadata(50, "my-metadata", -1)})
    committed = c.committed(TopicPartition("kp-group", 0))
    assert committed == 50
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    listed = str(a.list_groups())
    assert "kp-g" in listed, listed
    described = a.describe_groups(["kp-g"])
    text = str(described)
    assert "Stable" in text and "kp-g" in text, text
    offsets = a.list_group_offsets("kp-g")
    om = offsets["kp-g"][TopicPartition("kp-group", 0)]
    assert om.offset == 50 and om.metadata == "my-metadata", om
    c.close()
    a.close()
