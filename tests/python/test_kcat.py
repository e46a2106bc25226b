"""Debian's kcat (librdkafka 2.0.2) against Tusk: metadata, produce, consume, offsets for times,
consumer groups."""

import subprocess
import time


def kcat(broker, *args, input=None, timeout=60):
    r = subprocess.run(
        ["kcat", "-b", broker.bootstrap, *args],
        input=input, capture_output=True, timeout=timeout,
    )
    return r


def test_metadata_lists_broker_and_topics(broker):
    r = kcat(broker, "-P", "-t", "kcat-meta", input=b"x\n")
    assert r.returncode == 0, r.stderr
    r = kcat(broker, "-L")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert f"broker 1 at 127.0.0.1:{broker.port}" in out
    assert 'topic "kcat-meta" with 1 partitions' in out


def test_produce_consume_round_trip_with_keys(broker):
    lines = [f"key{i}:value-{i}" for i in range(500)]
    r = kcat(broker, "-P", "-t", "kcat-rt", "-K:", input=("\n".join(lines) + "\n").encode())
    assert r.returncode == 0, r.stderr
    r = kcat(broker, "-C", "-t", "kcat-rt", "-o", "beginning", "-e", "-f", "%k=%s@%o\n")
    assert r.returncode == 0, r.stderr
    got = r.stdout.decode().splitlines()
    assert got == [f"key{i}=value-{i}@{i}" for i in range(500)]


def test_offsets_for_times(broker):
    # Three batches with distinct timestamps (kcat -P sends the current time).
    for i in range(3):
        r = kcat(broker, "-P", "-t", "kcat-times", input=f"m{i}\n".encode())
        assert r.returncode == 0, r.stderr
        time.sleep(0.3)
    r = kcat(broker, "-C", "-t", "kcat-times", "-o", "beginning", "-e", "-f", "%T %o\n")
    stamps = [tuple(map(int, l.split())) for l in r.stdout.decode().splitlines()]
    assert [o for _, o in stamps] == [0, 1, 2]
    ts_second = stamps[1][0]
    r = kcat(broker, "-Q", "-t", f"kcat-times:0:{ts_second}")
    assert r.returncode == 0, r.stderr
    assert "offset 1" in r.stdout.decode(), r.stdout
    r = kcat(broker, "-Q", "-t", f"kcat-times:0:{stamps[2][0] + 60_000}")
    assert "offset -1" in r.stdout.decode(), r.stdout


def test_group_consumer(broker):
    r = kcat(broker, "-P", "-t", "kcat-group", input=b"".join(b"g%d\n" % i for i in range(20)))
    assert r.returncode == 0, r.stderr
    # -G joins a consumer group; -e exits at the end of the partitions.
    r = kcat(broker, "-G", "kcat-g1", "-o", "beginning", "-e", "-X", "session.timeout.ms=6000", "kcat-group", timeout=90)
    assert r.returncode == 0, r.stderr
    got = r.stdout.decode().splitlines()
    assert got == [f"g{i}" for i in range(20)]
