"""Apache Kafka's own command-line tools against Tusk: the classes behind kafka-topics.sh,
kafka-console-producer/consumer.sh, kafka-consumer-groups.sh, kafka-configs.sh,
kafka-get-offsets.sh, kafka-transactions.sh and the perf-test tools, run from the jars of the
Kafka fixture (scripts/kafka-fixture.sh, 4.4.0 from Maven Central)."""

import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(ROOT, "scripts", "kafka-fixture.sh")

TOPICS = "org.apache.kafka.tools.TopicCommand"
PRODUCER = "org.apache.kafka.tools.ConsoleProducer"
CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
CONFIGS = "org.apache.kafka.tools.ConfigCommand"
OFFSETS = "org.apache.kafka.tools.GetOffsetShell"
TRANSACTIONS = "org.apache.kafka.tools.TransactionsCommand"
PRODUCER_PERF = "org.apache.kafka.tools.ProducerPerformance"
CONSUMER_PERF = "org.apache.kafka.tools.ConsumerPerformance"


def tool(cls, *args, stdin=None, timeout=60, check=True):
    """Runs one Kafka tool class; returns its stdout (stderr is in the error on failure)."""
    r = subprocess.run(
        [FIXTURE, "tool", cls, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and r.returncode != 0:
        raise AssertionError(f"{cls} {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def test_topics_console_producer_and_consumer(broker):
    bs = ["--bootstrap-server", broker.bootstrap]
    tool(TOPICS, *bs, "--create", "--topic", "tools", "--partitions", "3",
         "--replication-factor", "1", "--config", "retention.ms=3600000")
    assert "tools" in tool(TOPICS, *bs, "--list").split()
    described = tool(TOPICS, *bs, "--describe", "--topic", "tools")
    assert "PartitionCount: 3" in described, described
    assert "retention.ms=3600000" in described, described
    # Creating it again is refused with Kafka's message.
    r = subprocess.run([FIXTURE, "tool", TOPICS, *bs, "--create", "--topic", "tools",
                        "--partitions", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "already exists" in (r.stdout + r.stderr), r.stdout + r.stderr
    tool(TOPICS, *bs, "--alter", "--topic", "tools", "--partitions", "4")
    assert "PartitionCount: 4" in tool(TOPICS, *bs, "--describe", "--topic", "tools")

    lines = "".join(f"k{i}:v{i}\n" for i in range(50))
    tool(PRODUCER, *bs, "--topic", "tools", "--reader-property", "parse.key=true",
         "--reader-property", "key.separator=:", stdin=lines)
    out = tool(CONSUMER, *bs, "--topic", "tools", "--from-beginning", "--max-messages", "50",
               "--formatter-property", "print.key=true",
               "--formatter-property", "key.separator=:",
               "--timeout-ms", "20000")
    got = sorted(out.split())
    assert got == sorted(f"k{i}:v{i}" for i in range(50)), out

    offsets = tool(OFFSETS, *bs, "--topic", "tools")
    total = sum(int(line.rsplit(":", 1)[1]) for line in offsets.split())
    assert total == 50, offsets

    tool(TOPICS, *bs, "--delete", "--topic", "tools")
    assert "tools" not in tool(TOPICS, *bs, "--list").split()


def test_consumer_groups_describe_and_reset_offsets(broker):
    bs = ["--bootstrap-server", broker.bootstrap]
    tool(TOPICS, *bs, "--create", "--topic", "grp", "--partitions", "2")
    tool(PRODUCER, *bs, "--topic", "grp", stdin="".join(f"m{i}\n" for i in range(20)))
    tool(CONSUMER, *bs, "--topic", "grp", "--group", "tools-g", "--from-beginning",
         "--max-messages", "20", "--timeout-ms", "20000")
    assert "tools-g" in tool(GROUPS, *bs, "--list").split()
    described = tool(GROUPS, *bs, "--describe", "--group", "tools-g")
    # Both partitions committed at their end: lag 0 everywhere.
    rows = [line.split() for line in described.splitlines() if line.startswith("tools-g")]
    assert len(rows) == 2, described
    header = [line.split() for line in described.splitlines() if "CURRENT-OFFSET" in line][0]
    cur, end, lag = header.index("CURRENT-OFFSET"), header.index("LOG-END-OFFSET"), header.index("LAG")
    assert sum(int(r[cur]) for r in rows) == 20, described
    assert all(r[cur] == r[end] and r[lag] == "0" for r in rows), described

    # Reset to the earliest offset (the group is empty, as the tool requires).
    out = tool(GROUPS, *bs, "--reset-offsets", "--group", "tools-g", "--topic", "grp",
               "--to-earliest", "--execute")
    assert "tools-g" in out, out
    described = tool(GROUPS, *bs, "--describe", "--group", "tools-g")
    rows = [line.split() for line in described.splitlines() if line.startswith("tools-g")]
    assert all(r[cur] == "0" for r in rows), described
    assert sum(int(r[lag]) for r in rows) == 20, described

    tool(GROUPS, *bs, "--delete", "--group", "tools-g")
    assert "tools-g" not in tool(GROUPS, *bs, "--list").split()


def test_configs_describe_and_alter(broker):
    bs = ["--bootstrap-server", broker.bootstrap]
    tool(TOPICS, *bs, "--create", "--topic", "cfg", "--partitions", "1")
    tool(CONFIGS, *bs, "--entity-type", "topics", "--entity-name", "cfg", "--alter",
         "--add-config", "retention.ms=120000,cleanup.policy=compact")
    out = tool(CONFIGS, *bs, "--entity-type", "topics", "--entity-name", "cfg", "--describe")
    assert "retention.ms=120000" in out and "cleanup.policy=compact" in out, out
    tool(CONFIGS, *bs, "--entity-type", "topics", "--entity-name", "cfg", "--alter",
         "--delete-config", "retention.ms")
    out = tool(CONFIGS, *bs, "--entity-type", "topics", "--entity-name", "cfg", "--describe")
    assert "retention.ms=120000" not in out, out
    # --all lists every config with its source.
    out = tool(CONFIGS, *bs, "--entity-type", "topics", "--entity-name", "cfg", "--describe",
               "--all")
    assert "segment.bytes=1073741824" in out, out
    # A bad value is refused with Kafka's message.
    r = subprocess.run([FIXTURE, "tool", CONFIGS, *bs, "--entity-type", "topics",
                        "--entity-name", "cfg", "--alter", "--add-config", "retention.ms=abc"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, r.stdout
    assert "Invalid value abc for configuration retention.ms" in r.stdout + r.stderr, r.stdout + r.stderr


def test_configs_manage_client_quotas(broker):
    bs = ["--bootstrap-server", broker.bootstrap]
    tool(CONFIGS, *bs, "--alter", "--add-config", "producer_byte_rate=1048576,consumer_byte_rate=2097152",
         "--entity-type", "users", "--entity-name", "alice", "--entity-type", "clients",
         "--entity-name", "app")
    tool(CONFIGS, *bs, "--alter", "--add-config", "request_percentage=50",
         "--entity-type", "clients", "--entity-default")
    out = tool(CONFIGS, *bs, "--describe", "--entity-type", "users", "--entity-name", "alice",
               "--entity-type", "clients", "--entity-name", "app")
    assert "producer_byte_rate=1048576.0" in out and "consumer_byte_rate=2097152.0" in out, out
    out = tool(CONFIGS, *bs, "--describe", "--entity-type", "clients", "--entity-default")
    assert "request_percentage=50.0" in out, out
    tool(CONFIGS, *bs, "--alter", "--delete-config", "consumer_byte_rate", "--entity-type", "users",
         "--entity-name", "alice", "--entity-type", "clients", "--entity-name", "app")
    out = tool(CONFIGS, *bs, "--describe", "--entity-type", "users", "--entity-name", "alice",
               "--entity-type", "clients", "--entity-name", "app")
    assert "consumer_byte_rate" not in out and "producer_byte_rate=1048576.0" in out, out


def test_transactions_tool_lists_and_describes(broker):
    from confluent_kafka import Producer

    bs = ["--bootstrap-server", broker.bootstrap]
    tool(TOPICS, *bs, "--create", "--topic", "txt", "--partitions", "1")
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "tools-tx"})
    p.init_transactions(10)
    p.begin_transaction()
    p.produce("txt", b"x")
    p.flush(10)
    listed = tool(TRANSACTIONS, *bs, "list")
    assert "tools-tx" in listed, listed
    described = tool(TRANSACTIONS, *bs, "describe", "--transactional-id", "tools-tx")
    assert "Ongoing" in described, described
    p.commit_transaction(10)
    described = tool(TRANSACTIONS, *bs, "describe", "--transactional-id", "tools-tx")
    assert "CompleteCommit" in described, described


def test_perf_tools(broker):
    bs = ["--bootstrap-server", broker.bootstrap]
    tool(TOPICS, *bs, "--create", "--topic", "perf", "--partitions", "2")
    out = tool(PRODUCER_PERF, "--topic", "perf", "--num-records", "20000", "--record-size", "100",
               "--throughput", "-1", "--producer-props", f"bootstrap.servers={broker.bootstrap}",
               timeout=120)
    assert "20000 records sent" in out, out
    out = tool(CONSUMER_PERF, *bs, "--topic", "perf", "--messages", "20000", "--timeout", "30000",
               timeout=120)
    # The CSV line: start, end, MB, MB/s, records, records/s, ...
    data = [line for line in out.splitlines() if line and line[0].isdigit()]
    assert data, out
    assert int(data[-1].split(",")[4].strip()) >= 20000, out
