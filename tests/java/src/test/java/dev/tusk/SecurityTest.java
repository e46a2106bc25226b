package dev.tusk;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.DescribeTopicsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.errors.ClusterAuthorizationException;
import org.apache.kafka.common.errors.GroupAuthorizationException;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.errors.TopicAuthorizationException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;

/**
 * The Java client over SASL_SSL with each mechanism (PLAIN from a users file, SCRAM-SHA-256 and
 * SCRAM-SHA-512 created with Admin.alterUserScramCredentials), a PEM truststore, and a wrong
 * password refused with SaslAuthenticationException; ACLs managed with the Admin client and
 * enforced on its producers and consumers with Kafka's exceptions.
 */
class SecurityTest {
    @Test
    void saslSslWithEveryMechanism() throws Exception {
        assumeTrue(TuskProcess.EXTERNAL == null, "needs a Tusk started with SASL_SSL listeners");
        Path certs = Files.createTempDirectory("tusk-certs");
        Process mk = new ProcessBuilder("../../scripts/make-certs.sh", certs.toString())
                .redirectErrorStream(true).start();
        assertEquals(0, mk.waitFor(), new String(mk.getInputStream().readAllBytes()));
        Files.writeString(certs.resolve("users.txt"), "alice:alice-secret\n");
        int plainPort;
        int saslPort;
        try (ServerSocket a = new ServerSocket(0); ServerSocket b = new ServerSocket(0)) {
            plainPort = a.getLocalPort();
            saslPort = b.getLocalPort();
        }
        // The PLAINTEXT listener is the one TuskProcess waits for (its --listen is replaced).
        try (TuskProcess tusk = TuskProcess.startOn(plainPort,
                "--listeners", "PLAINTEXT://127.0.0.1:" + plainPort + ",SASL_SSL://127.0.0.1:" + saslPort,
                "--ssl-keystore-location", certs.resolve("server-keystore.pem").toString(),
                "--sasl-plain-users-file", certs.resolve("users.txt").toString())) {
            Properties ap = new Properties();
            ap.put("bootstrap.servers", "127.0.0.1:" + plainPort);
            try (Admin admin = Admin.create(ap)) {
                admin.alterUserScramCredentials(List.of(
                        new UserScramCredentialUpsertion("bob",
                                new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), "bob-secret"),
                        new UserScramCredentialUpsertion("carol",
                                new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), "carol-secret")))
                        .all().get();
            }
            String[][] cases = {
                {"PLAIN", "org.apache.kafka.common.security.plain.PlainLoginModule", "alice", "alice-secret"},
                {"SCRAM-SHA-256", "org.apache.kafka.common.security.scram.ScramLoginModule", "bob", "bob-secret"},
                {"SCRAM-SHA-512", "org.apache.kafka.common.security.scram.ScramLoginModule", "carol", "carol-secret"},
            };
            for (String[] c : cases) {
                Properties p = sasl(saslPort, certs, c[0], c[1], c[2], c[3]);
                String topic = "java-" + c[0].toLowerCase();
                try (KafkaProducer<String, String> producer =
                        new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
                    producer.send(new ProducerRecord<>(topic, 0, "k", "hello " + c[0])).get();
                }
                try (KafkaConsumer<String, String> consumer =
                        new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer())) {
                    TopicPartition tp = new TopicPartition(topic, 0);
                    consumer.assign(List.of(tp));
                    consumer.seekToBeginning(List.of(tp));
                    String got = null;
                    long until = System.currentTimeMillis() + 15_000;
                    while (got == null && System.currentTimeMillis() < until) {
                        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                            got = r.value();
                        }
                    }
                    assertEquals("hello " + c[0], got);
                }
            }
            Properties wrong = sasl(saslPort, certs, "SCRAM-SHA-256",
                    "org.apache.kafka.common.security.scram.ScramLoginModule", "bob", "not-bob's");
            wrong.put("request.timeout.ms", "10000");
            wrong.put("default.api.timeout.ms", "15000");
            try (Admin admin = Admin.create(wrong)) {
                ExecutionException e = assertThrows(ExecutionException.class,
                        () -> admin.listTopics().names().get());
                assertInstanceOf(SaslAuthenticationException.class, e.getCause());
            }
        }
    }

    @Test
    void aclsAreEnforcedWithKafkasExceptions() throws Exception {
        assumeTrue(TuskProcess.EXTERNAL == null, "needs a Tusk started with an authorizer");
        Path dir = Files.createTempDirectory("tusk-acl");
        Files.writeString(dir.resolve("users.txt"), "admin:admin-secret\nalice:alice-secret\n");
        int plainPort;
        int saslPort;
        try (ServerSocket a = new ServerSocket(0); ServerSocket b = new ServerSocket(0)) {
            plainPort = a.getLocalPort();
            saslPort = b.getLocalPort();
        }
        try (TuskProcess tusk = TuskProcess.startOn(plainPort,
                "--listeners", "PLAINTEXT://127.0.0.1:" + plainPort + ",SASL_PLAINTEXT://127.0.0.1:" + saslPort,
                "--sasl-enabled-mechanisms", "PLAIN",
                "--sasl-plain-users-file", dir.resolve("users.txt").toString(),
                "--authorizer-class-name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "--super-users", "User:admin")) {
            String module = "org.apache.kafka.common.security.plain.PlainLoginModule";
            Properties admin = plain(saslPort, module, "admin", "admin-secret");
            Properties alice = plain(saslPort, module, "alice", "alice-secret");
            AclBinding read = new AclBinding(
                    new ResourcePattern(ResourceType.TOPIC, "java-acl-", PatternType.PREFIXED),
                    new AccessControlEntry("User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW));
            AclBinding group = new AclBinding(
                    new ResourcePattern(ResourceType.GROUP, "java-acl-group", PatternType.LITERAL),
                    new AccessControlEntry("User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW));
            try (Admin a = Admin.create(admin)) {
                a.createTopics(List.of(new NewTopic("java-acl-orders", 1, (short) 1))).all().get();
                a.createAcls(List.of(read, group)).all().get();
                AclBindingFilter alicesFilter = new AclBindingFilter(ResourcePatternFilter.ANY,
                        new AccessControlEntryFilter("User:alice", null, AclOperation.ANY, AclPermissionType.ANY));
                assertEquals(Set.of(read, group), Set.copyOf(a.describeAcls(alicesFilter).values().get()));
                try (KafkaProducer<String, String> producer =
                        new KafkaProducer<>(admin, new StringSerializer(), new StringSerializer())) {
                    producer.send(new ProducerRecord<>("java-acl-orders", 0, "k", "for alice")).get();
                }
            }
            alice.put("max.block.ms", "10000");
            alice.put("delivery.timeout.ms", "10000");
            alice.put("request.timeout.ms", "5000");
            // READ but no WRITE anywhere: her (idempotent, the default) producer may not even get
            // a producer id (KIP-679), as with Kafka; without idempotence, the write itself is
            // refused.
            try (KafkaProducer<String, String> producer =
                    new KafkaProducer<>(alice, new StringSerializer(), new StringSerializer())) {
                ExecutionException e = assertThrows(ExecutionException.class,
                        () -> producer.send(new ProducerRecord<>("java-acl-orders", 0, "k", "v")).get());
                assertInstanceOf(ClusterAuthorizationException.class, e.getCause());
            }
            Properties plainProducer = (Properties) alice.clone();
            plainProducer.put("enable.idempotence", "false");
            try (KafkaProducer<String, String> producer =
                    new KafkaProducer<>(plainProducer, new StringSerializer(), new StringSerializer())) {
                ExecutionException e = assertThrows(ExecutionException.class,
                        () -> producer.send(new ProducerRecord<>("java-acl-orders", 0, "k", "v")).get());
                assertInstanceOf(TopicAuthorizationException.class, e.getCause());
            }
            // She reads in her group and commits there.
            alice.put("group.id", "java-acl-group");
            alice.put("auto.offset.reset", "earliest");
            try (KafkaConsumer<String, String> consumer =
                    new KafkaConsumer<>(alice, new StringDeserializer(), new StringDeserializer())) {
                consumer.subscribe(List.of("java-acl-orders"));
                String got = null;
                long until = System.currentTimeMillis() + 20_000;
                while (got == null && System.currentTimeMillis() < until) {
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                        got = r.value();
                    }
                }
                assertEquals("for alice", got);
                consumer.commitSync();
            }
            // Another group is not hers: GroupAuthorizationException.
            alice.put("group.id", "java-acl-other");
            try (KafkaConsumer<String, String> consumer =
                    new KafkaConsumer<>(alice, new StringDeserializer(), new StringDeserializer())) {
                consumer.subscribe(List.of("java-acl-orders"));
                assertThrows(GroupAuthorizationException.class, () -> {
                    long until = System.currentTimeMillis() + 20_000;
                    while (System.currentTimeMillis() < until) {
                        consumer.poll(Duration.ofMillis(200));
                    }
                });
            }
            try (Admin a = Admin.create(alice)) {
                // Authorized operations: READ and the DESCRIBE it implies.
                Set<AclOperation> ops = a.describeTopics(List.of("java-acl-orders"),
                                new DescribeTopicsOptions().includeAuthorizedOperations(true))
                        .allTopicNames().get().get("java-acl-orders").authorizedOperations();
                assertEquals(Set.of(AclOperation.READ, AclOperation.DESCRIBE), ops);
                ExecutionException e = assertThrows(ExecutionException.class,
                        () -> a.createAcls(List.of(read)).all().get());
                assertInstanceOf(ClusterAuthorizationException.class, e.getCause());
            }
            try (Admin a = Admin.create(admin)) {
                assertEquals(List.of(read), List.copyOf(a.deleteAcls(List.of(read.toFilter())).all().get()));
            }
        }
    }

    static Properties plain(int port, String module, String user, String password) {
        Properties p = new Properties();
        p.put("bootstrap.servers", "127.0.0.1:" + port);
        p.put("security.protocol", "SASL_PLAINTEXT");
        p.put("sasl.mechanism", "PLAIN");
        p.put("sasl.jaas.config", module + " required username=\"" + user + "\" password=\"" + password + "\";");
        return p;
    }

    static Properties sasl(int port, Path certs, String mechanism, String module, String user, String password) {
        Properties p = new Properties();
        p.put("bootstrap.servers", "127.0.0.1:" + port);
        p.put("security.protocol", "SASL_SSL");
        p.put("sasl.mechanism", mechanism);
        p.put("sasl.jaas.config", module + " required username=\"" + user + "\" password=\"" + password + "\";");
        p.put("ssl.truststore.type", "PEM");
        p.put("ssl.truststore.location", certs.resolve("ca.pem").toString());
        p.put("group.id", "java-sec");
        return p;
    }
}
