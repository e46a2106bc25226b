package dev.tusk;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.cli.ConnectDistributed;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.runtime.Connect;
import org.apache.kafka.connect.sink.SinkConnector;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTask;
import org.apache.kafka.connect.source.SourceConnector;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.source.SourceTask;
import org.junit.jupiter.api.Test;

/**
 * A Kafka Connect worker in distributed mode (one worker) on Tusk: its config, offset and
 * status topics (compacted), its group membership, a source connector writing numbered records
 * and a sink connector reading them back; the worker must keep running through a broker restart.
 * (The FileStream connectors are not served by Maven Central here, so the test carries its own
 * minimal pair.)
 */
class ConnectTest {
    /** Every value the sink saw. */
    static final Set<String> SEEN = ConcurrentHashMap.newKeySet();

    public static class CountingSource extends SourceConnector {
        private Map<String, String> props;
        @Override public void start(Map<String, String> p) { props = p; }
        @Override public Class<? extends Task> taskClass() { return CountingSourceTask.class; }
        @Override public List<Map<String, String>> taskConfigs(int max) { return List.of(props); }
        @Override public void stop() {}
        @Override public ConfigDef config() { return new ConfigDef(); }
        @Override public String version() { return "1"; }
    }

    public static class CountingSourceTask extends SourceTask {
        private long next;
        private String topic;
        private long limit;
        @Override public String version() { return "1"; }
        @Override public void start(Map<String, String> p) {
            topic = p.get("topic");
            limit = Long.parseLong(p.get("records"));
            Map<String, Object> off = context.offsetStorageReader().offset(Map.of("source", "counter"));
            next = off == null ? 0 : (Long) off.get("next");
        }
        @Override public List<SourceRecord> poll() throws InterruptedException {
            if (next >= limit) {
                Thread.sleep(100);
                return null;
            }
            List<SourceRecord> out = new ArrayList<>();
            for (int i = 0; i < 50 && next < limit; i++, next++) {
                out.add(new SourceRecord(Map.of("source", "counter"), Map.of("next", next + 1),
                        topic, null, Schema.STRING_SCHEMA, "n" + next));
            }
            return out;
        }
        @Override public void stop() {}
    }

    public static class CollectingSink extends SinkConnector {
        private Map<String, String> props;
        @Override public void start(Map<String, String> p) { props = p; }
        @Override public Class<? extends Task> taskClass() { return CollectingSinkTask.class; }
        @Override public List<Map<String, String>> taskConfigs(int max) { return List.of(props); }
        @Override public void stop() {}
        @Override public ConfigDef config() { return new ConfigDef(); }
        @Override public String version() { return "1"; }
    }

    public static class CollectingSinkTask extends SinkTask {
        @Override public String version() { return "1"; }
        @Override public void start(Map<String, String> p) {}
        @Override public void put(Collection<SinkRecord> records) {
            records.forEach(r -> SEEN.add((String) r.value()));
        }
        @Override public void stop() {}
    }

    static int freePort() throws Exception {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    static String put(HttpClient http, String url, String json) throws Exception {
        HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(url))
                .header("Content-Type", "application/json")
                .PUT(HttpRequest.BodyPublishers.ofString(json)).build(), HttpResponse.BodyHandlers.ofString());
        assertTrue(r.statusCode() / 100 == 2, r.statusCode() + " " + r.body());
        return r.body();
    }

    static String get(HttpClient http, String url) throws Exception {
        return http.send(HttpRequest.newBuilder(URI.create(url)).GET().build(),
                HttpResponse.BodyHandlers.ofString()).body();
    }

    static void waitFor(String what, long ms, java.util.function.BooleanSupplier cond) throws Exception {
        long deadline = System.currentTimeMillis() + ms;
        while (!cond.getAsBoolean()) {
            if (System.currentTimeMillis() > deadline) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(100);
        }
    }

    @Test
    void distributedWorkerRunsConnectorsAndSurvivesABrokerRestart() throws Exception {
        TuskProcess tusk = TuskProcess.start("--group-initial-rebalance-delay-ms", "0");
        int rest = freePort();
        Map<String, String> w = new HashMap<>();
        w.put("bootstrap.servers", tusk.bootstrap());
        w.put("group.id", "tusk-connect");
        w.put("config.storage.topic", "connect-configs");
        w.put("offset.storage.topic", "connect-offsets");
        w.put("status.storage.topic", "connect-status");
        w.put("config.storage.replication.factor", "1");
        w.put("offset.storage.replication.factor", "1");
        w.put("status.storage.replication.factor", "1");
        w.put("key.converter", "org.apache.kafka.connect.storage.StringConverter");
        w.put("value.converter", "org.apache.kafka.connect.storage.StringConverter");
        w.put("offset.flush.interval.ms", "500");
        w.put("listeners", "http://127.0.0.1:" + rest);
        w.put("plugin.discovery", "only_scan");
        w.put("scheduled.rebalance.max.delay.ms", "0");
        Connect connect = new ConnectDistributed().startConnect(w);
        HttpClient http = HttpClient.newHttpClient();
        String base = "http://127.0.0.1:" + rest;
        try {
            waitFor("the REST API", 60_000, () -> {
                try {
                    return get(http, base + "/connectors").startsWith("[");
                } catch (Exception e) {
                    return false;
                }
            });
            put(http, base + "/connectors/source/config", "{\"connector.class\":\""
                    + CountingSource.class.getName() + "\",\"tasks.max\":\"1\",\"topic\":\"connect-data\",\"records\":\"500\"}");
            put(http, base + "/connectors/sink/config", "{\"connector.class\":\""
                    + CollectingSink.class.getName() + "\",\"tasks.max\":\"1\",\"topics\":\"connect-data\"}");
            waitFor("500 records through source and sink", 60_000, () -> SEEN.size() >= 500);
            assertEquals(500, SEEN.size());

            // The broker restarts (SIGTERM, then the same data dir): the worker goes on, and
            // the source, from its committed offset, adds the next records.
            tusk = tusk.restart();
            put(http, base + "/connectors/source/config", "{\"connector.class\":\""
                    + CountingSource.class.getName() + "\",\"tasks.max\":\"1\",\"topic\":\"connect-data\",\"records\":\"800\"}");
            waitFor("800 records after the restart", 90_000, () -> SEEN.size() >= 800);
            assertEquals(800, SEEN.size(), "each record once in the sink's set");
            String status = get(http, base + "/connectors/source/status");
            assertTrue(status.contains("\"RUNNING\""), status);
        } finally {
            connect.stop();
            connect.awaitStop();
            tusk.close();
        }
    }
}
