"""TLS and SASL with real clients (issue #16): certificates made here with openssl, one broker
with a listener of each security protocol, SCRAM users created through the Kafka admin API
(AlterUserScramCredentials) and PLAIN users from a file; confluent-kafka, kafka-python and kcat
authenticate with each mechanism; wrong passwords, unknown users, certificates of another CA
and silent connections are refused the way clients expect; credentials survive a restart."""

import base64
import json
import os
import re
import socket
import struct
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from conftest import Broker, free_port


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}", cwd=d)


def make_cert(d, ca, name, subject, san=None):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", subject, cwd=d)
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext, cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("certs"))
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_cert(d, "ca", "server", "/CN=localhost", san="IP:127.0.0.1,DNS:localhost")
    make_cert(d, "ca", "client", "/O=Tusk/CN=client")
    make_cert(d, "other-ca", "stranger", "/CN=stranger")
    # Kafka's PEM keystore: certificate chain and key in one file.
    with open(os.path.join(d, "server-keystore.pem"), "w") as out:
        for part in ("server.pem", "server.key"):
            out.write(open(os.path.join(d, part)).read())
    return d


def start_secure(tmp_path, certs, client_auth="requested", extra=()):
    ports = {name: free_port() for name in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")}
    users = tmp_path / "plain-users.txt"
    users.write_text("# PLAIN users\nalice:alice-secret\n")
    b = Broker(str(tmp_path), [
        "--listeners", ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items()),
        "--ssl-keystore-location", os.path.join(certs, "server-keystore.pem"),
        "--ssl-truststore-location", os.path.join(certs, "ca.pem"),
        "--ssl-client-auth", client_auth,
        "--sasl-plain-users-file", str(users),
        "--authentication-timeout-ms", "1500",
        "--sasl-enabled-mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER",
        *extra,
    ], port=ports["PLAINTEXT"],
        log_level="info,tusk::handlers::sasl_authenticate=debug,tusk::connection=debug")
    b.ports = ports
    return b.start()


def sasl_conf(b, certs, mechanism, user, password, protocol="SASL_SSL"):
    conf = {
        "bootstrap.servers": f"127.0.0.1:{b.ports[protocol]}",
        "security.protocol": protocol,
        "sasl.mechanisms": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }
    if protocol.endswith("SSL"):
        conf["ssl.ca.location"] = os.path.join(certs, "ca.pem")
    return conf


def round_trip(conf, topic):
    p = Producer({**conf, "linger.ms": 0})
    p.produce(topic, value=b"hello " + topic.encode(), partition=0)
    assert p.flush(15) == 0
    c = Consumer({**conf, "group.id": "sec-" + topic, "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = None
    for _ in range(50):
        m = c.poll(0.3)
        if m is not None and m.error() is None:
            got = m.value()
            break
    c.close()
    assert got == b"hello " + topic.encode()


def add_scram_users(b):
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    futs = admin.alter_user_scram_credentials([
        UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"bob-secret"),
        UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"carol-secret"),
    ])
    for f in futs.values():
        f.result(10)
    described = admin.describe_user_scram_credentials(["bob", "carol"])
    info = {u: f.result(10) for u, f in described.items()}
    assert [(i.mechanism, i.iterations) for i in info["bob"].scram_credential_infos] == [(ScramMechanism.SCRAM_SHA_256, 4096)]
    assert [(i.mechanism, i.iterations) for i in info["carol"].scram_credential_infos] == [(ScramMechanism.SCRAM_SHA_512, 8192)]
    return admin


def auth_errors(conf):
    """The errors a client reports when it tries to connect with `conf`."""
    errors = []
    p = Producer({**conf, "error_cb": lambda e: errors.append(e)})
    deadline = time.time() + 10
    while time.time() < deadline and not any(e.code() == KafkaError._AUTHENTICATION for e in errors):
        p.poll(0.2)
    return errors


def test_each_mechanism_with_each_client(tmp_path, certs):
    b = start_secure(tmp_path, certs)
    try:
        add_scram_users(b)
        cases = [
            ("PLAIN", "alice", "alice-secret", "SASL_SSL"),
            ("PLAIN", "bob", "bob-secret", "SASL_SSL"),  # checked against bob's SCRAM credential
            ("SCRAM-SHA-256", "bob", "bob-secret", "SASL_SSL"),
            ("SCRAM-SHA-512", "carol", "carol-secret", "SASL_SSL"),
            ("SCRAM-SHA-256", "bob", "bob-secret", "SASL_PLAINTEXT"),
        ]
        for i, (mech, user, pw, proto) in enumerate(cases):
            round_trip(sasl_conf(b, certs, mech, user, pw, proto), f"sec-{i}")
        # TLS alone, and TLS with a client certificate.
        ssl = {"bootstrap.servers": f"127.0.0.1:{b.ports['SSL']}", "security.protocol": "SSL",
               "ssl.ca.location": os.path.join(certs, "ca.pem")}
        round_trip(ssl, "sec-ssl")
        round_trip({**ssl, "ssl.certificate.location": os.path.join(certs, "client.pem"),
                    "ssl.key.location": os.path.join(certs, "client.key")}, "sec-mtls")
        log = re.sub(r"\x1b\[[0-9;]*m", "", b.read_log())
        assert "User:CN=client,O=Tusk" in log, log[-3000:]
        # kafka-python, SCRAM-SHA-512 and PLAIN over SASL_SSL.
        from kafka import KafkaConsumer, KafkaProducer
        for mech, user, pw in (("SCRAM-SHA-512", "carol", "carol-secret"), ("PLAIN", "alice", "alice-secret")):
            kw = dict(bootstrap_servers=f"127.0.0.1:{b.ports['SASL_SSL']}", security_protocol="SASL_SSL",
                      sasl_mechanism=mech, sasl_plain_username=user, sasl_plain_password=pw,
                      ssl_cafile=os.path.join(certs, "ca.pem"))
            kp = KafkaProducer(**kw)
            kp.send("sec-kp", b"from kafka-python " + mech.encode()).get(timeout=15)
            kp.close()
            kc = KafkaConsumer("sec-kp", auto_offset_reset="earliest", consumer_timeout_ms=5000, **kw)
            assert any(m.value == b"from kafka-python " + mech.encode() for m in kc)
            kc.close()
        # kcat lists metadata over SASL_SSL with SCRAM-SHA-256.
        out = subprocess.run([
            "kcat", "-b", f"127.0.0.1:{b.ports['SASL_SSL']}", "-L",
            "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-256",
            "-X", "sasl.username=bob", "-X", "sasl.password=bob-secret",
            "-X", f"ssl.ca.location={os.path.join(certs, 'ca.pem')}",
        ], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert "sec-0" in out.stdout
    finally:
        b.stop()


def test_wrong_credentials_unknown_users_and_silent_clients_are_refused(tmp_path, certs):
    b = start_secure(tmp_path, certs)
    try:
        add_scram_users(b)
        for mech, user, pw in (("SCRAM-SHA-256", "bob", "wrong"), ("SCRAM-SHA-512", "nobody", "x"),
                               ("PLAIN", "alice", "wrong"), ("PLAIN", "nobody", "x"),
                               ("SCRAM-SHA-512", "bob", "bob-secret")):  # bob has no SHA-512
            errors = auth_errors(sasl_conf(b, certs, mech, user, pw))
            auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
            assert auth, f"{mech} {user}: {errors}"
            assert "Authentication failed" in auth[0].str(), auth[0].str()
        # Anything but the SASL requests before authenticating closes the connection.
        with socket.create_connection(("127.0.0.1", b.ports["SASL_PLAINTEXT"])) as s:
            s.sendall(struct.pack(">ihhihi", 14, 3, 0, 1, -1, 0))  # Metadata v0, no topics
            s.settimeout(5)
            assert s.recv(100) == b""
        # Before authenticating, a frame over 512 KiB (sasl.server.max.receive.size) closes it.
        with socket.create_connection(("127.0.0.1", b.ports["SASL_PLAINTEXT"])) as s:
            s.sendall(struct.pack(">i", 1 << 20) + b"\0" * 64)
            s.settimeout(5)
            started = time.time()
            assert s.recv(100) == b""
            assert time.time() - started < 1.0
        # A connection that never authenticates is closed after the timeout.
        with socket.create_connection(("127.0.0.1", b.ports["SASL_PLAINTEXT"])) as s:
            s.settimeout(10)
            started = time.time()
            assert s.recv(100) == b""
            assert 1.0 < time.time() - started < 8
        log = re.sub(r"\x1b\[[0-9;]*m", "", b.read_log())
        assert "SASL authentication failed" in log
        assert "not authenticated within 1500 ms" in log
    finally:
        b.stop()


def test_client_certificate_of_another_ca_is_refused(tmp_path, certs):
    b = start_secure(tmp_path, certs, client_auth="required", extra=[
        "--ssl-principal-mapping-rules", "RULE:^CN=(.*?),O=Tusk$/$1@tusk/U,DEFAULT"])
    try:
        base = {"bootstrap.servers": f"127.0.0.1:{b.ports['SSL']}", "security.protocol": "SSL",
                "ssl.ca.location": os.path.join(certs, "ca.pem")}
        round_trip({**base, "ssl.certificate.location": os.path.join(certs, "client.pem"),
                    "ssl.key.location": os.path.join(certs, "client.key")}, "mtls-ok")
        for extra in ({"ssl.certificate.location": os.path.join(certs, "stranger.pem"),
                       "ssl.key.location": os.path.join(certs, "stranger.key")}, {}):
            errors = []
            p = Producer({**base, **extra, "error_cb": lambda e: errors.append(e)})
            deadline = time.time() + 8
            while time.time() < deadline and not errors:
                p.poll(0.2)
            assert any(e.code() in (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN)
                       for e in errors), errors
        log = re.sub(r"\x1b\[[0-9;]*m", "", b.read_log())
        assert "TLS handshake failed" in log
        assert "principal=User:CLIENT@TUSK" in log, log[-2000:]
    finally:
        b.stop()


def test_scram_credentials_survive_restart_and_deletion_takes_effect(tmp_path, certs):
    b = start_secure(tmp_path, certs)
    try:
        admin = add_scram_users(b)
        b.kill9()
        b.start()
        round_trip(sasl_conf(b, certs, "SCRAM-SHA-256", "bob", "bob-secret"), "persist")
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        for f in admin.alter_user_scram_credentials(
                [UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_256)]).values():
            f.result(10)
        # Deleting it again: RESOURCE_NOT_FOUND.
        with pytest.raises(KafkaException) as e:
            for f in admin.alter_user_scram_credentials(
                    [UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_256)]).values():
                f.result(10)
        assert e.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND
        b.restart()
        errors = auth_errors(sasl_conf(b, certs, "SCRAM-SHA-256", "bob", "bob-secret"))
        assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    finally:
        b.stop()


def unsecured_jwt(claims):
    b = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    return f"{b({'alg': 'none'})}.{b(claims)}."


def test_oauthbearer_unsecured_jwt(tmp_path, certs):
    b = start_secure(tmp_path, certs)
    try:
        base = {"bootstrap.servers": f"127.0.0.1:{b.ports['SASL_SSL']}", "security.protocol": "SASL_SSL",
                "ssl.ca.location": os.path.join(certs, "ca.pem"), "sasl.mechanisms": "OAUTHBEARER"}
        # librdkafka's own unsecured-JWT builder, as a developer would configure it.
        round_trip({**base, "enable.sasl.oauthbearer.unsecure.jwt": True,
                    "sasl.oauthbearer.config": "principal=dave lifeSeconds=600"}, "oauth")
        log = re.sub(r"\x1b\[[0-9;]*m", "", b.read_log())
        assert "user=dave" in log, log[-2000:]
        # An expired token (the client is told it is still valid) is refused.
        expired = unsecured_jwt({"sub": "dave", "iat": int(time.time()) - 120, "exp": int(time.time()) - 60})
        errors = auth_errors({**base, "oauth_cb": lambda _cfg: (expired, time.time() + 600, "dave")})
        auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
        assert auth and "expired" in auth[0].str(), errors
    finally:
        b.stop()


def rsa_jwk(kid):
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    nums = key.public_key().public_numbers()
    b = lambda i: base64.urlsafe_b64encode(i.to_bytes((i.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
    return key, {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": b(nums.n), "e": b(nums.e)}


def signed_jwt(key, kid, claims):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    b = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    head = f"{b({'alg': 'RS256', 'kid': kid, 'typ': 'JWT'})}.{b(claims)}"
    sig = key.sign(head.encode(), padding.PKCS1v15(), hashes.SHA256())
    return head + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


def test_oauthbearer_tokens_signed_by_a_jwks_key(tmp_path, certs):
    key, jwk = rsa_jwk("k1")
    other, _ = rsa_jwk("k1")  # same key id, another key
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    b = start_secure(tmp_path, certs, extra=[
        "--sasl-oauthbearer-jwks-endpoint-url", f"file://{jwks}",
        "--sasl-oauthbearer-expected-issuer", "https://issuer.test",
        "--sasl-oauthbearer-expected-audience", "tusk",
    ])
    try:
        base = {"bootstrap.servers": f"127.0.0.1:{b.ports['SASL_SSL']}", "security.protocol": "SASL_SSL",
                "ssl.ca.location": os.path.join(certs, "ca.pem"), "sasl.mechanisms": "OAUTHBEARER"}
        now = int(time.time())
        good = {"sub": "erin", "iss": "https://issuer.test", "aud": ["tusk", "other"], "iat": now, "exp": now + 600}
        token = signed_jwt(key, "k1", good)
        round_trip({**base, "oauth_cb": lambda _cfg: (token, time.time() + 600, "erin")}, "jwks-ok")
        for bad, why in (
            (signed_jwt(other, "k1", good), "signature"),
            (signed_jwt(key, "k1", {**good, "aud": "someone-else"}), "audience"),
            (signed_jwt(key, "k1", {**good, "iss": "https://evil.test"}), "issuer"),
            (signed_jwt(key, "k1", {**good, "exp": now - 120}), "expired"),
            (signed_jwt(key, "k2", good), "no key"),
            (unsecured_jwt({"sub": "erin", "exp": now + 600}), "RS256"),
        ):
            errors = auth_errors({**base, "oauth_cb": lambda _cfg, t=bad: (t, time.time() + 600, "erin")})
            auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
            assert auth and why in auth[0].str(), (why, errors)
    finally:
        b.stop()


def test_oauthbearer_jwks_over_http_follows_key_rotation(tmp_path, certs):
    import http.server
    import threading
    key1, jwk1 = rsa_jwk("k1")
    key2, jwk2 = rsa_jwk("k2")
    served = {"doc": {"keys": [jwk1]}, "fetches": 0}

    class Jwks(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            served["fetches"] += 1
            body = json.dumps(served["doc"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    b = start_secure(tmp_path, certs, extra=["--sasl-oauthbearer-jwks-endpoint-url", url])
    try:
        assert served["fetches"] == 1  # at start
        base = {"bootstrap.servers": f"127.0.0.1:{b.ports['SASL_SSL']}", "security.protocol": "SASL_SSL",
                "ssl.ca.location": os.path.join(certs, "ca.pem"), "sasl.mechanisms": "OAUTHBEARER"}
        now = int(time.time())
        claims = {"sub": "frank", "iat": now, "exp": now + 600}
        t1 = signed_jwt(key1, "k1", claims)
        round_trip({**base, "oauth_cb": lambda _cfg: (t1, time.time() + 600, "frank")}, "jwks-http-1")
        # The provider rotates to k2: a token naming k2 makes the broker fetch the JWKS again.
        served["doc"] = {"keys": [jwk2]}
        t2 = signed_jwt(key2, "k2", claims)
        round_trip({**base, "oauth_cb": lambda _cfg: (t2, time.time() + 600, "frank")}, "jwks-http-2")
        assert served["fetches"] >= 2, served
        # The fetch replaced the keys: k1, gone from the provider, is no longer accepted.
        t3 = signed_jwt(key1, "k1", claims)
        errors = auth_errors({**base, "oauth_cb": lambda _cfg: (t3, time.time() + 600, "frank")})
        assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    finally:
        b.stop()
        server.shutdown()


def test_sasl_handshake_v0_takes_bare_tokens(tmp_path, certs):
    """SaslHandshake v0 (clients of Kafka 0.10.0): the SASL tokens follow as bare size-prefixed
    frames, not SaslAuthenticate requests; a wrong password just closes the connection."""
    b = start_secure(tmp_path, certs)

    def handshake_v0(s):
        mech = b"PLAIN"
        body = struct.pack(">hhih", 17, 0, 1, -1) + struct.pack(">h", len(mech)) + mech
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", recv_exactly(s, 4))[0]
        resp = recv_exactly(s, size)
        assert struct.unpack(">ih", resp[:6]) == (1, 0), resp  # correlation id, no error

    def recv_exactly(s, n):
        out = b""
        while len(out) < n:
            chunk = s.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed")
            out += chunk
        return out

    try:
        with socket.create_connection(("127.0.0.1", b.ports["SASL_PLAINTEXT"]), timeout=5) as s:
            handshake_v0(s)
            token = b"\0alice\0alice-secret"
            s.sendall(struct.pack(">i", len(token)) + token)
            assert recv_exactly(s, 4) == b"\0\0\0\0"  # PLAIN's empty reply: authenticated
            body = struct.pack(">hhih", 3, 0, 2, -1) + struct.pack(">i", 0)  # Metadata v0
            s.sendall(struct.pack(">i", len(body)) + body)
            size = struct.unpack(">i", recv_exactly(s, 4))[0]
            assert struct.unpack(">i", recv_exactly(s, size)[:4])[0] == 2
        with socket.create_connection(("127.0.0.1", b.ports["SASL_PLAINTEXT"]), timeout=5) as s:
            handshake_v0(s)
            token = b"\0alice\0wrong"
            s.sendall(struct.pack(">i", len(token)) + token)
            assert s.recv(100) == b""
    finally:
        b.stop()
