package dev.tusk;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Files;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.junit.jupiter.api.Test;

/**
 * A Kafka Streams application with exactly-once v2 against Tusk: word count with a re-keying
 * groupBy (a repartition topic) and a persistent count store (a compacted changelog topic).
 * Every count must come out exactly right, read with read_committed.
 */
class StreamsTest {
    @Test
    void wordCountExactlyOnceV2() throws Exception {
        try (TuskProcess tusk = TuskProcess.start("--group-initial-rebalance-delay-ms", "0")) {
            Properties admin = new Properties();
            admin.put("bootstrap.servers", tusk.bootstrap());
            try (Admin a = Admin.create(admin)) {
                a.createTopics(List.of(new NewTopic("words-in", 2, (short) 1),
                        new NewTopic("words-out", 2, (short) 1))).all().get();
            }
            Map<String, Long> expected = new HashMap<>();
            Properties pp = new Properties();
            pp.put("bootstrap.servers", tusk.bootstrap());
            pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            String[] words = {"tusk", "walrus", "kafka", "log", "broker"};
            try (KafkaProducer<String, String> p = new KafkaProducer<>(pp)) {
                for (int i = 0; i < 500; i++) {
                    String w = words[(i * 7) % words.length] + (i % 3);
                    expected.merge(w, 1L, Long::sum);
                    p.send(new ProducerRecord<>("words-in", "line" + i, w + " " + w));
                    expected.merge(w, 1L, Long::sum);
                }
            }

            StreamsBuilder b = new StreamsBuilder();
            b.stream("words-in", Consumed.with(Serdes.String(), Serdes.String()))
                    .flatMapValues(v -> List.of(v.split(" ")))
                    .groupBy((k, v) -> v, Grouped.with(Serdes.String(), Serdes.String()))
                    .count(Materialized.as("counts"))
                    .toStream()
                    .to("words-out", Produced.with(Serdes.String(), Serdes.Long()));
            Properties sp = new Properties();
            sp.put(StreamsConfig.APPLICATION_ID_CONFIG, "tusk-wordcount");
            sp.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, tusk.bootstrap());
            sp.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
            sp.put(StreamsConfig.STATE_DIR_CONFIG, Files.createTempDirectory("streams").toString());
            sp.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
            sp.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
            try (KafkaStreams streams = new KafkaStreams(b.build(), sp)) {
                streams.start();
                Properties cp = new Properties();
                cp.put("bootstrap.servers", tusk.bootstrap());
                cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
                cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, LongDeserializer.class.getName());
                cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
                cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
                cp.put(ConsumerConfig.GROUP_ID_CONFIG, "wordcount-reader");
                Map<String, Long> latest = new HashMap<>();
                try (KafkaConsumer<String, Long> c = new KafkaConsumer<>(cp)) {
                    c.subscribe(List.of("words-out"));
                    long deadline = System.currentTimeMillis() + 90_000;
                    while (!latest.equals(expected) && System.currentTimeMillis() < deadline) {
                        for (ConsumerRecord<String, Long> r : c.poll(Duration.ofMillis(200))) {
                            latest.put(r.key(), r.value());
                        }
                        if (streams.state() == KafkaStreams.State.ERROR) {
                            break;
                        }
                    }
                }
                assertEquals(expected, latest, "final counts (streams state " + streams.state() + ")");
            }
        }
    }
}
