"""The storage write path is probed at start, never assumed (issue #14): O_DIRECT through
io_uring where the data dir takes it, buffered io_uring when asked, and plain pwrite where
io_uring is refused — here by a real seccomp filter like Docker's default profile, which makes
io_uring_setup fail with EPERM. Whichever path, the start line and the metrics name it, and
produce, consume and a kill -9 restart behave the same."""

import ctypes
import os
import re
import tempfile
import threading

from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import free_port
from test_confluent import create
from test_metrics import scrape

IO_URING_SETUP = 425  # the same number on x86_64 and aarch64


def block_io_uring():
    """preexec_fn: a seccomp filter refusing io_uring_setup with EPERM, everything else allowed."""

    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte),
                    ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

    ld_nr, jeq, ret = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K
    allow, errno_eperm = 0x7FFF0000, 0x00050000 | 1
    prog = (SockFilter * 4)(
        SockFilter(ld_nr, 0, 0, 0),  # the syscall number
        SockFilter(jeq, 0, 1, IO_URING_SETUP),
        SockFilter(ret, 0, 0, errno_eperm),
        SockFilter(ret, 0, 0, allow),
    )
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    fprog = SockFprog(4, prog)
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, FILTER
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


def start_log(b):
    """The broker's log of this start, without terminal colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", b.read_log_since_start())


def direct_io_works(directory):
    path = os.path.join(directory, "odirect-probe")
    try:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_DIRECT)
        os.close(fd)
        return True
    except OSError:
        return False
    finally:
        if os.path.exists(path):
            os.remove(path)


def produce_and_read_back(b, topic, n=300):
    create(b.bootstrap, topic, 1)
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0, "acks": "all"})
    for i in range(n):
        p.produce(topic, value=b"v%05d" % i + b"x" * (i % 900), partition=0)
    assert p.flush(20) == 0
    return read_all(b, topic, n)


def read_all(b, topic, n):
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "paths", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    for _ in range(200):
        for m in c.consume(500, timeout=0.2):
            assert m.error() is None, m.error()
            got.append(m.value())
        if len(got) >= n:
            break
    c.close()
    assert [v[:6] for v in got] == [b"v%05d" % i for i in range(n)]
    return got


def path_metrics(port):
    m = scrape(port)
    in_use = [p for p in ("uring_direct", "uring_buffered", "pwrite")
              if m[("tusk_storage_write_path", (("path", p),))] == 1]
    writes = {p: m[("tusk_storage_writes_total", (("path", p),))]
              for p in ("uring_direct", "uring_buffered", "pwrite")}
    return in_use, writes, m


def test_default_path_is_o_direct_through_io_uring(broker_factory):
    port = free_port()
    b = broker_factory(["--metrics-listen", f"127.0.0.1:{port}"])
    expected = "uring_direct" if direct_io_works(b.data_dir) else "uring_buffered"
    assert f'storage_writes="{expected}"' in start_log(b)
    produce_and_read_back(b, "direct")
    # Eight producers at once to one partition.
    create(b.bootstrap, "shared", 1)

    def produce(k):
        p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0, "acks": "all"})
        for i in range(1500):
            p.produce("shared", value=b"p%d-%d" % (k, i), partition=0)
            p.poll(0)
        assert p.flush(30) == 0

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    in_use, writes, m = path_metrics(port)
    assert in_use == [expected]
    assert writes[expected] > 0
    assert writes["pwrite"] == 0 and sum(writes.values()) == writes[expected], writes
    # Coalescing itself is proved deterministically by tests/produce_path.rs (pipelined requests).
    assert m[("tusk_produce_batches_total", ())] >= m[("tusk_produce_appends_total", ())] > 0
    # Everything is there after a kill -9 on this path.
    b.kill9()
    b.start()
    read_all(b, "direct", 300)


def test_io_uring_refused_by_seccomp_falls_back_to_pwrite(broker_factory):
    port = free_port()
    b = broker_factory(["--metrics-listen", f"127.0.0.1:{port}"], preexec_fn=block_io_uring)
    log = start_log(b)
    assert 'storage_writes="pwrite"' in log, log[-3000:]
    produce_and_read_back(b, "fallback")
    in_use, writes, _ = path_metrics(port)
    assert in_use == ["pwrite"]
    assert writes["pwrite"] > 0 and writes["uring_direct"] == 0 and writes["uring_buffered"] == 0
    b.kill9()
    b.start()
    read_all(b, "fallback", 300)


def test_buffered_and_pwrite_paths_by_flag(broker_factory):
    for flag, path in (("buffered", "uring_buffered"), ("pwrite", "pwrite")):
        port = free_port()
        b = broker_factory(["--metrics-listen", f"127.0.0.1:{port}", "--storage-writes", flag])
        assert f'storage_writes="{path}"' in start_log(b)
        produce_and_read_back(b, "flag-" + flag)
        in_use, writes, _ = path_metrics(port)
        assert in_use == [path]
        # Single appends take pwrite on the buffered path (one entry is one pwrite anyway).
        assert writes["uring_direct"] == 0
        b.stop()
