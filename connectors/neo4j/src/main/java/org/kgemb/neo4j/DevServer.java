package org.kgemb.neo4j;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.BoltConnectorInternalSettings;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.graphdb.QueryExecutionException;
import org.neo4j.harness.Neo4j;
import org.neo4j.harness.Neo4jBuilder;
import org.neo4j.harness.Neo4jBuilders;
import org.kgemb.neo4j.procedures.KgembProcedures;

/**
 * An in-process Neo4j 5 (Neo4j's own test harness) for kgemb's tests and for development.
 *
 * <p>Bolt listens on 127.0.0.1 only. Authentication is off unless {@code --password} is given. With {@code --data DIR}
 * the databases live in DIR and survive a restart; without it they live in a temporary folder removed on exit.
 * Prints {@code kgemb-neo4j ready bolt://127.0.0.1:PORT} once Bolt accepts connections and stops cleanly on SIGTERM.
 */
public final class DevServer {
    static final String HOST = "127.0.0.1";

    private DevServer() {}

    public static void main(String[] args) throws Exception {
        Map<String, String> opts;
        int port;
        long pagecache;
        try {
            opts = Args.parse(args);
            port = Args.port(opts.getOrDefault("port", "7687"));
            pagecache = Args.bytes(opts.getOrDefault("pagecache", "256m"));
        } catch (IllegalArgumentException e) {
            fail(e.getMessage() + "\n" + Args.USAGE);
            return;
        }
        if (opts.containsKey("help")) {
            System.out.println(Args.USAGE);
            return;
        }
        if (!portIsFree(port)) {
            fail("port " + port + " on " + HOST + " is already in use: stop the program using it or choose another"
                    + " port (--port, or NEO4J_PORT for `make neo4j`)");
        }
        Path work = Files.createTempDirectory("kgemb-neo4j");
        Neo4jBuilder builder = Neo4jBuilders.newInProcessBuilder(work)
                .withDisabledServer()
                // kgemb's procedures and functions, as the plugin jar gives them to a user's server
                .withProcedure(KgembProcedures.class)
                .withFunction(KgembProcedures.class)
                .withConfig(HttpConnector.enabled, false)
                .withConfig(BoltConnector.enabled, true)
                .withConfig(BoltConnector.listen_address, new SocketAddress(HOST, port))
                .withConfig(BoltConnector.advertised_address, new SocketAddress(HOST, port))
                .withConfig(GraphDatabaseSettings.auth_enabled, opts.containsKey("password"))
                .withConfig(GraphDatabaseSettings.pagecache_memory, pagecache)
                // a dev server has no clients to wait for: stop in about a second, not Bolt's default ten
                .withConfig(BoltConnectorInternalSettings.thread_pool_shutdown_wait_time, Duration.ofSeconds(1))
                .withConfig(BoltConnectorInternalSettings.connection_shutdown_wait_time, Duration.ofSeconds(1));
        if (opts.containsKey("data")) {
            Path data = Path.of(opts.get("data")).toAbsolutePath();
            Files.createDirectories(data);
            builder = builder.withConfig(GraphDatabaseSettings.data_directory, data);
        }
        builder = builder.withProcedure(org.kgemb.neo4j.procedures.VectorProcedures.class) // kgemb.vectors.set
                .withProcedure(org.kgemb.neo4j.procedures.ExportProcedures.class); // kgemb.export.relationships
        Neo4j neo4j = builder.build();
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            neo4j.close();
            deleteQuietly(work);
            stopped.countDown();
        }, "kgemb-neo4j-shutdown"));
        try {
            if (opts.containsKey("password")) {
                setPassword(neo4j, opts.get("password"));
            }
            waitForBolt(port);
        } catch (RuntimeException e) {
            fail("could not start: " + e.getMessage());
        }
        System.out.println("kgemb-neo4j ready bolt://" + HOST + ":" + port);
        System.out.flush();
        stopped.await();
    }

    /** Sets the password of the user {@code neo4j}; a restart with the password it already has changes nothing. */
    static void setPassword(Neo4j neo4j, String password) {
        try {
            neo4j.databaseManagementService().database("system").executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED", Map.of("password", password));
        } catch (QueryExecutionException e) {
            if (!e.getMessage().contains("cannot be the same")) {
                throw e;
            }
        }
    }

    static void deleteQuietly(Path dir) {
        try (var paths = Files.walk(dir)) {
            paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException ignored) {
            // a leftover temporary folder is harmless
        }
    }

    static boolean portIsFree(int port) {
        try (ServerSocket socket = new ServerSocket()) {
            socket.setReuseAddress(true);
            socket.bind(new InetSocketAddress(HOST, port));
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    static void waitForBolt(int port) throws InterruptedException {
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (System.nanoTime() < deadline) {
            try (Socket socket = new Socket()) {
                socket.connect(new InetSocketAddress(HOST, port), 500);
                return;
            } catch (IOException e) {
                Thread.sleep(50);
            }
        }
        fail("Bolt did not accept connections on " + HOST + ":" + port + " within 60 s");
    }

    /** Prints one line and exits with code 2; System.exit runs the shutdown hook, which stops a started Neo4j. */
    static void fail(String message) {
        System.err.println("kgemb-neo4j: " + message);
        System.exit(2);
    }
}
