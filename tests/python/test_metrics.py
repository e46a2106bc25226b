"""The Prometheus endpoint (--metrics-listen): valid exposition format (parsed by the official
client library's parser) and numbers that follow what clients did."""

import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port
from test_confluent import create


def scrape(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_metrics_follow_produce_consume_groups_and_transactions(broker_factory):
    port = free_port()
    b = broker_factory(["--metrics-listen", f"127.0.0.1:{port}"])
    create(b.bootstrap, "met", 2)
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0})
    for i in range(100):
        p.produce("met", value=b"x" * 100, partition=i % 2)
    p.flush(10)
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "met-g", "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition("met", 0, 20), TopicPartition("met", 1, 50)], asynchronous=False)
    t = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": "met-txn"})
    t.init_transactions(10)
    t.begin_transaction()
    t.produce("met", value=b"open", partition=0)
    t.flush(10)

    m = scrape(port)
    assert m[("tusk_topic_records_in_total", (("topic", "met"),))] == 101
    assert m[("tusk_topic_bytes_in_total", (("topic", "met"),))] > 100 * 100
    assert m[("tusk_partition_log_end_offset", (("partition", "0"), ("topic", "met")))] == 51
    assert m[("tusk_partition_log_end_offset", (("partition", "1"), ("topic", "met")))] == 50
    assert m[("tusk_consumer_group_lag", (("group", "met-g"), ("partition", "0"), ("topic", "met")))] == 31
    assert m[("tusk_consumer_group_lag", (("group", "met-g"), ("partition", "1"), ("topic", "met")))] == 0
    assert m[("tusk_transactional_ids", (("state", "Ongoing"),))] == 1
    assert m[("tusk_requests_total", (("api", "Produce"),))] >= 1
    assert m[("tusk_connections", ())] >= 1
    t.commit_transaction(10)
    m = scrape(port)
    assert m[("tusk_transactional_ids", (("state", "CompleteCommit"),))] == 1
    assert m[("tusk_oldest_open_transaction_seconds", ())] == 0
    c.close()
