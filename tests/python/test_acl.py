"""ACLs with real clients (issue #16): a broker with `--authorizer-class-name acl`, SASL/PLAIN
users (admin a super user); ACLs created, described and deleted with confluent-kafka's and
kafka-python's admin clients; producers, consumers and kcat refused or allowed as Kafka would
(TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED, hidden topics); prefixed ACLs, DENY
over ALLOW, `allow.everyone.if.no.acl.found`; ACLs persisted across a restart."""

import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from conftest import Broker, free_port

USERS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}


def start(tmp_path, extra=()):
    ports = {"PLAINTEXT": free_port(), "SASL_PLAINTEXT": free_port()}
    users = tmp_path / "users.txt"
    users.write_text("".join(f"{u}:{p}\n" for u, p in USERS.items()))
    b = Broker(str(tmp_path), [
        "--listeners", ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items()),
        "--sasl-enabled-mechanisms", "PLAIN",
        "--sasl-plain-users-file", str(users),
        "--authorizer-class-name", "acl",
        "--super-users", "User:admin",
        *extra,
    ], port=ports["PLAINTEXT"])
    b.ports = ports
    return b.start()


def conf(b, user):
    return {
        "bootstrap.servers": f"127.0.0.1:{b.ports['SASL_PLAINTEXT']}",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": user,
        "sasl.password": USERS[user],
    }


def produce_error(c, topic):
    """The error (or None) a producer with config `c` gets writing one record to `topic`."""
    got = []
    p = Producer({**c, "linger.ms": 0, "message.timeout.ms": 10000})
    p.produce(topic, value=b"v", on_delivery=lambda err, msg: got.append(err))
    p.flush(15)
    assert got, "no delivery report"
    return got[0]


def acl(rtype, name, pattern, principal, op, perm=AclPermissionType.ALLOW):
    return AclBinding(rtype, name, pattern, principal, "*", op, perm)


def test_acls_with_confluent_kafka_and_kafka_python(tmp_path):
    b = start(tmp_path)
    try:
        admin = AdminClient(conf(b, "admin"))
        for f in admin.create_topics([NewTopic(t, 1) for t in ("orders-eu", "orders-us", "payroll")]).values():
            f.result(15)
        wanted = [
            acl(ResourceType.TOPIC, "orders-", ResourcePatternType.PREFIXED, "User:alice", AclOperation.WRITE),
            acl(ResourceType.TOPIC, "orders-", ResourcePatternType.PREFIXED, "User:alice", AclOperation.READ),
            acl(ResourceType.TOPIC, "orders-us", ResourcePatternType.LITERAL, "User:alice", AclOperation.WRITE,
                AclPermissionType.DENY),
            acl(ResourceType.GROUP, "alice-", ResourcePatternType.PREFIXED, "User:alice", AclOperation.READ),
        ]
        for f in admin.create_acls(wanted).values():
            assert f.result(15) is None
        described = admin.describe_acls(AclBindingFilter(
            ResourceType.ANY, None, ResourcePatternType.ANY, "User:alice", None,
            AclOperation.ANY, AclPermissionType.ANY)).result(15)
        assert sorted(map(str, described)) == sorted(map(str, wanted))

        alice = conf(b, "alice")
        # A prefixed ALLOW lets her write orders-eu; the DENY on orders-us beats it; payroll has
        # no ACL for her at all.
        assert produce_error(alice, "orders-eu") is None
        assert produce_error(alice, "orders-us").code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert produce_error(alice, "payroll").code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert produce_error(conf(b, "admin"), "payroll") is None  # a super user

        # She reads orders-eu in a group she may use, and not in another one.
        c = Consumer({**alice, "group.id": "alice-app", "auto.offset.reset": "earliest"})
        c.subscribe(["orders-eu"])
        got = None
        for _ in range(60):
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got = m.value()
                break
        assert got == b"v"
        c.commit(asynchronous=False)
        c.close()
        c = Consumer({**alice, "group.id": "mallory-app", "auto.offset.reset": "earliest"})
        c.subscribe(["orders-eu"])
        err = None
        for _ in range(40):
            try:
                m = c.poll(0.5)
            except KafkaException as e:
                err = e.args[0]
                break
            if m is not None and m.error() is not None:
                err = m.error()
                break
        c.close()
        assert err is not None and err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, err

        # Metadata hides what she may not describe (kcat -L).
        out = subprocess.run(["kcat", "-L", "-b", alice["bootstrap.servers"],
                              "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN",
                              "-X", "sasl.username=alice", "-X", "sasl.password=alice-secret"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert '"orders-eu"' in out.stdout and '"orders-us"' in out.stdout
        assert "payroll" not in out.stdout

        # She may not manage ACLs.
        alice_admin = AdminClient(alice)
        with pytest.raises(KafkaException) as e:
            for f in alice_admin.create_acls([acl(ResourceType.TOPIC, "payroll",
                                                  ResourcePatternType.LITERAL, "User:alice",
                                                  AclOperation.ALL)]).values():
                f.result(15)
        assert e.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED

        # kafka-python: describe and delete ACLs; its producer sees the same refusal.
        from kafka import KafkaAdminClient, KafkaProducer
        from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ResourcePatternFilter
        from kafka.admin import ResourceType as KpResourceType, ACLResourcePatternType
        from kafka.errors import TopicAuthorizationFailedError
        kw = dict(bootstrap_servers=alice["bootstrap.servers"], security_protocol="SASL_PLAINTEXT",
                  sasl_mechanism="PLAIN")
        ka = KafkaAdminClient(sasl_plain_username="admin", sasl_plain_password="admin-secret", **kw)
        deny_filter = ACLFilter(principal="User:alice", host="*", operation=ACLOperation.WRITE,
                                permission_type=ACLPermissionType.DENY,
                                resource_pattern=ResourcePatternFilter(KpResourceType.TOPIC, "orders-us",
                                                                       ACLResourcePatternType.LITERAL))
        acls, err = ka.describe_acls(deny_filter)
        assert err.errno == 0 and len(acls) == 1
        kp = KafkaProducer(sasl_plain_username="alice", sasl_plain_password="alice-secret",
                           max_block_ms=10000, **kw)
        with pytest.raises(TopicAuthorizationFailedError):
            kp.send("orders-us", b"x").get(timeout=15)
        kp.close()
        result = ka.delete_acls([deny_filter])
        assert len(result[0][1]) == 1, result
        # (kafka-python remembers a refused topic: a new producer.)
        kp = KafkaProducer(sasl_plain_username="alice", sasl_plain_password="alice-secret",
                           max_block_ms=10000, **kw)
        kp.send("orders-us", b"now allowed").get(timeout=15)
        kp.close()
        ka.close()

        # ACLs survive a restart; so does what they refuse.
        b.stop()
        b.start()
        assert produce_error(alice, "payroll").code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert produce_error(alice, "orders-us") is None
        admin = AdminClient(conf(b, "admin"))
        left = admin.describe_acls(AclBindingFilter(
            ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
            AclOperation.ANY, AclPermissionType.ANY)).result(15)
        assert len(left) == 3, left
    finally:
        b.stop()


def test_allow_everyone_if_no_acl_found(tmp_path):
    b = start(tmp_path, ["--allow-everyone-if-no-acl-found", "true"])
    try:
        admin = AdminClient(conf(b, "admin"))
        for f in admin.create_topics([NewTopic(t, 1) for t in ("open", "guarded")]).values():
            f.result(15)
        for f in admin.create_acls([acl(ResourceType.TOPIC, "guarded", ResourcePatternType.LITERAL,
                                        "User:bob", AclOperation.WRITE)]).values():
            f.result(15)
        # No ACL covers "open": everyone, even the anonymous PLAINTEXT listener, may write.
        plain = {"bootstrap.servers": b.bootstrap}
        assert produce_error(plain, "open") is None
        assert produce_error(conf(b, "alice"), "open") is None
        # "guarded" has an ACL: only bob.
        assert produce_error(conf(b, "bob"), "guarded") is None
        assert produce_error(conf(b, "alice"), "guarded").code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert produce_error(plain, "guarded").code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        b.stop()
