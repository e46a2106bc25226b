package dev.tusk;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;

/**
 * A real Tusk process: its own free port and data directory, killed on close. With
 * CALIBRATE_BOOTSTRAP=host:port the tests run against that broker instead (Apache Kafka, to
 * calibrate what the tier expects); a restart is then not possible.
 */
final class TuskProcess implements AutoCloseable {
    final int port;
    final Path dir;
    private final Process process;
    private final String[] extraArgs;

    private TuskProcess(int port, Path dir, Process process, String[] extraArgs) {
        this.port = port;
        this.dir = dir;
        this.process = process;
        this.extraArgs = extraArgs;
    }

    static final String EXTERNAL = System.getenv("CALIBRATE_BOOTSTRAP");

    static TuskProcess start(String... extraArgs) throws IOException, InterruptedException {
        if (EXTERNAL != null) {
            return new TuskProcess(Integer.parseInt(EXTERNAL.substring(EXTERNAL.lastIndexOf(':') + 1)),
                    null, null, extraArgs);
        }
        int port;
        try (ServerSocket s = new ServerSocket(0)) {
            port = s.getLocalPort();
        }
        return start(port, Files.createTempDirectory("tusk-java"), extraArgs);
    }

    /** A Tusk whose `--listen` port is `port` (for tests that replace it with `--listeners`). */
    static TuskProcess startOn(int port, String... extraArgs) throws IOException, InterruptedException {
        return start(port, Files.createTempDirectory("tusk-java"), extraArgs);
    }

    /** Stops this broker (SIGTERM) and starts it again on the same port and data dir. */
    TuskProcess restart() throws IOException, InterruptedException {
        if (process == null) {
            return this;
        }
        close();
        return start(port, dir, extraArgs);
    }

    private static TuskProcess start(int port, Path dir, String... extraArgs)
            throws IOException, InterruptedException {
        String bin = System.getenv().getOrDefault("TUSK_BIN", "../../target/release/tusk");
        List<String> cmd = new ArrayList<>(List.of(bin,
                "--listen", "127.0.0.1:" + port,
                "--data-dir", dir.resolve("data").toString(),
                "--log-level", "warn"));
        cmd.addAll(List.of(extraArgs));
        Process p = new ProcessBuilder(cmd)
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(dir.resolve("tusk.log").toFile()))
                .start();
        Instant deadline = Instant.now().plus(Duration.ofSeconds(20));
        while (Instant.now().isBefore(deadline)) {
            if (!p.isAlive()) {
                throw new IllegalStateException("tusk exited: " + Files.readString(dir.resolve("tusk.log")));
            }
            try (Socket ignored = new Socket("127.0.0.1", port)) {
                return new TuskProcess(port, dir, p, extraArgs);
            } catch (IOException notYet) {
                Thread.sleep(20);
            }
        }
        p.destroyForcibly();
        throw new IllegalStateException("tusk did not listen within 20 s");
    }

    String bootstrap() {
        return EXTERNAL != null ? EXTERNAL : "127.0.0.1:" + port;
    }

    @Override
    public void close() throws InterruptedException {
        if (process == null) {
            return;
        }
        process.destroy();
        if (!process.waitFor(10, java.util.concurrent.TimeUnit.SECONDS)) {
            process.destroyForcibly();
        }
    }
}
