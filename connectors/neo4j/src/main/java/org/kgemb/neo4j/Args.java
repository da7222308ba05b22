package org.kgemb.neo4j;

import java.util.HashMap;
import java.util.Map;
import java.util.Set;

/** Command-line options of {@link DevServer}: {@code --name value} pairs and the {@code --help} flag. */
final class Args {
    static final String USAGE = "usage: java -jar kgemb-neo4j.jar [--port 7687] [--data DIR] [--password PW]"
            + " [--pagecache 256m]";
    private static final Set<String> VALUED = Set.of("port", "data", "password", "pagecache");

    private Args() {}

    static Map<String, String> parse(String[] args) {
        Map<String, String> opts = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (arg.equals("--help") || arg.equals("-h")) {
                opts.put("help", "");
                continue;
            }
            String name = arg.startsWith("--") ? arg.substring(2) : "";
            if (!VALUED.contains(name)) {
                throw new IllegalArgumentException("unknown option " + arg);
            }
            if (i + 1 >= args.length) {
                throw new IllegalArgumentException("option " + arg + " needs a value");
            }
            opts.put(name, args[++i]);
        }
        return opts;
    }

    static int port(String text) {
        try {
            int port = Integer.parseInt(text);
            if (port > 0 && port < 65536) {
                return port;
            }
        } catch (NumberFormatException ignored) {
            // reported below
        }
        throw new IllegalArgumentException("--port must be a number from 1 to 65535, not " + text);
    }

    static long bytes(String text) {
        String t = text.trim().toLowerCase();
        long unit = 1;
        char last = t.isEmpty() ? ' ' : t.charAt(t.length() - 1);
        if (last == 'k' || last == 'm' || last == 'g') {
            unit = last == 'k' ? 1L << 10 : last == 'm' ? 1L << 20 : 1L << 30;
            t = t.substring(0, t.length() - 1);
        }
        try {
            return Long.parseLong(t) * unit;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--pagecache must be a size such as 256m or 1g, not " + text);
        }
    }
}
