package dev.tusk;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentLinkedQueue;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.quota.ClientQuotaAlteration;
import org.apache.kafka.common.quota.ClientQuotaEntity;
import org.apache.kafka.common.quota.ClientQuotaFilter;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.junit.jupiter.api.Test;

/**
 * Client quotas with the Java clients: set with Admin.alterClientQuotas, a producer running
 * flat out is held to within 10% of its byte rate once the quota window has filled (measured
 * from 6 s to 18 s), a consumer (measured from 6 s to 30 s) to at most one burst (3 s of quota)
 * over and at least 80% of its rate (Kafka's throttled fetches return nothing, which costs
 * consumers some of the quota), and the clients
 * see the throttle (their throttle-time metrics). The broker runs with 3 quota windows of 1 s (Kafka's
 * `quota.window.num`), so the steady state comes after a few seconds instead of eleven.
 */
class QuotaTest {
    static final int QUOTA = 400_000;
    static final int VALUE = 8 * 1024;
    static final int SECONDS = 18;
    /** The consumer's run: long enough that one burst is a small part of what is measured. */
    static final int CONSUME_SECONDS = 30;

    @Test
    void producerAndConsumerAreHeldToTheirByteRates() throws Exception {
        assumeTrue(TuskProcess.EXTERNAL == null, "needs a Tusk with short quota windows");
        try (TuskProcess tusk = TuskProcess.start("--quota-window-num", "3")) {
            Properties ap = new Properties();
            ap.put("bootstrap.servers", tusk.bootstrap());
            try (Admin admin = Admin.create(ap)) {
                admin.createTopics(List.of(new NewTopic("quota-topic", 1, (short) 1),
                        new NewTopic("quota-fill", 1, (short) 1))).all().get();
                admin.alterClientQuotas(List.of(
                        new ClientQuotaAlteration(new ClientQuotaEntity(Map.of(ClientQuotaEntity.CLIENT_ID, "fast-producer")),
                                List.of(new ClientQuotaAlteration.Op("producer_byte_rate", (double) QUOTA))),
                        new ClientQuotaAlteration(new ClientQuotaEntity(Map.of(ClientQuotaEntity.CLIENT_ID, "fast-consumer")),
                                List.of(new ClientQuotaAlteration.Op("consumer_byte_rate", (double) QUOTA)))))
                        .all().get();
                Map<ClientQuotaEntity, Map<String, Double>> described =
                        admin.describeClientQuotas(ClientQuotaFilter.all()).entities().get();
                assertEquals(Map.of("producer_byte_rate", (double) QUOTA),
                        described.get(new ClientQuotaEntity(Map.of(ClientQuotaEntity.CLIENT_ID, "fast-producer"))));
            }

            // Data for the consumer, written by a client without a quota.
            Properties fill = new Properties();
            fill.put("bootstrap.servers", tusk.bootstrap());
            fill.put("client.id", "filler");
            byte[] value = new byte[VALUE];
            try (KafkaProducer<byte[], byte[]> producer =
                    new KafkaProducer<>(fill, new ByteArraySerializer(), new ByteArraySerializer())) {
                for (int i = 0; i < (CONSUME_SECONDS + 4) * QUOTA / VALUE; i++) {
                    producer.send(new ProducerRecord<>("quota-fill", 0, null, value));
                }
                producer.flush();
            }

            // Produce flat out; acknowledged bytes after the first 6 s give the rate.
            Properties pp = new Properties();
            pp.put("bootstrap.servers", tusk.bootstrap());
            pp.put("client.id", "fast-producer");
            pp.put("acks", "1");
            pp.put("linger.ms", "5");
            pp.put("batch.size", "65536");
            // A small buffer: send() blocks instead of queueing minutes of data to flush.
            pp.put("buffer.memory", "262144");
            ConcurrentLinkedQueue<Long> acked = new ConcurrentLinkedQueue<>();
            long start = System.nanoTime();
            double producerThrottle;
            try (KafkaProducer<byte[], byte[]> producer =
                    new KafkaProducer<>(pp, new ByteArraySerializer(), new ByteArraySerializer())) {
                while (System.nanoTime() - start < SECONDS * 1_000_000_000L) {
                    producer.send(new ProducerRecord<>("quota-topic", 0, null, value), (md, e) -> {
                        if (e == null) {
                            acked.add(System.nanoTime() - start);
                        }
                    });
                }
                producer.flush();
                producerThrottle = metric(producer.metrics(), "produce-throttle-time-max");
            }
            double produced = rate(acked, 6, SECONDS);
            System.out.printf("QuotaTest: producer %.0f B/s against %d (%.3f)%n", produced, QUOTA, produced / QUOTA);
            assertTrue(Math.abs(produced - QUOTA) <= 0.1 * QUOTA,
                    "producer rate " + produced + " B/s, quota " + QUOTA);
            assertTrue(producerThrottle > 0, "the producer saw no throttle time");

            // Consume, flat out.
            Properties cp = new Properties();
            cp.put("bootstrap.servers", tusk.bootstrap());
            cp.put("client.id", "fast-consumer");
            // Fetches small against the quota: a throttled fetch returns nothing and is not
            // counted (Kafka's rule), so fetches near the window's cap (quota x 2 s here) get
            // about half the quota, in Kafka as in Tusk; 64 KiB fetches measured 0.87-0.96.
            cp.put("max.partition.fetch.bytes", "65536");
            ConcurrentLinkedQueue<Long> got = new ConcurrentLinkedQueue<>();
            double consumerThrottle;
            try (KafkaConsumer<byte[], byte[]> consumer =
                    new KafkaConsumer<>(cp, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
                TopicPartition tp = new TopicPartition("quota-fill", 0);
                consumer.assign(List.of(tp));
                consumer.seekToBeginning(List.of(tp));
                long cstart = System.nanoTime();
                while (System.nanoTime() - cstart < CONSUME_SECONDS * 1_000_000_000L) {
                    for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(100))) {
                        got.add(System.nanoTime() - cstart);
                    }
                }
                consumerThrottle = metric(consumer.metrics(), "fetch-throttle-time-max");
            }
            double consumed = rate(got, 6, CONSUME_SECONDS);
            System.out.printf("QuotaTest: consumer %.0f B/s against %d (%.3f)%n", consumed, QUOTA, consumed / QUOTA);
            // A consumer goes in bursts: it fetches until the rate measured over the live
            // windows (at most 3 s of them here) passes the quota, then waits out the throttle,
            // so at any moment it may be ahead by up to 3 s of quota, and a measured span
            // can end at the top of a burst. The bound is the quota plus that one burst over the
            // span (measured over 12 s it was once 1.111, 0.87-0.96 in six other runs; hence
            // the longer consumer run). Under it, Kafka's rule (a throttled fetch returns
            // nothing) costs consumers some of their quota.
            double burst = 3.0 / (CONSUME_SECONDS - 6);
            assertTrue(consumed <= (1 + burst) * QUOTA && consumed >= 0.8 * QUOTA,
                    "consumer rate " + consumed + " B/s, quota " + QUOTA);
            assertTrue(consumerThrottle > 0, "the consumer saw no throttle time");
        }
    }

    /** Bytes per second of the records whose times (ns since the start) fall in [from, to) s. */
    static double rate(ConcurrentLinkedQueue<Long> times, int from, int to) {
        List<Long> in = new ArrayList<>();
        for (long t : times) {
            if (t >= from * 1_000_000_000L && t < to * 1_000_000_000L) {
                in.add(t);
            }
        }
        return (double) in.size() * VALUE / (to - from);
    }

    static double metric(Map<org.apache.kafka.common.MetricName, ? extends org.apache.kafka.common.Metric> metrics,
            String name) {
        return metrics.entrySet().stream()
                .filter(e -> e.getKey().name().equals(name))
                .mapToDouble(e -> ((Number) e.getValue().metricValue()).doubleValue())
                .filter(v -> !Double.isNaN(v))
                .max().orElse(0);
    }
}
