package org.kgemb.neo4j.procedures;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.BitSet;
import java.util.Random;

/**
 * The procedures' kernels without Neo4j: the top-10 scan of {@code kgemb.predict.tails} (RotatE's distance form)
 * and {@code kgemb.rank}'s pass with several evidence items, over a random table of {@code n} rows, timed per query
 * (wall and CPU of all threads), beside the memory bandwidth of a plain read of the same bytes (the floor).
 *
 * <pre>java -cp kgemb-neo4j.jar org.kgemb.neo4j.procedures.KernelBench N DIM QUERIES ITEMS</pre>
 *
 * prints one line of {@code key=value} pairs.
 */
public final class KernelBench {
    private KernelBench() {}

    private static volatile double sink;

    public static void main(String[] args) {
        int n = args.length > 0 ? Integer.parseInt(args[0]) : 100_000;
        int dim = args.length > 1 ? Integer.parseInt(args[1]) : 256;
        int queries = args.length > 2 ? Integer.parseInt(args[2]) : 50;
        int items = args.length > 3 ? Integer.parseInt(args[3]) : 10;
        Random rng = new Random(0);
        Table t = new Table(n, dim);
        float[] row = new float[dim];
        for (int e = 0; e < n; e++) {
            for (int j = 0; j < dim; j++) {
                row[j] = (float) rng.nextGaussian();
            }
            t.append(row, 0);
        }
        float[][] qs = new float[queries + 20][dim];
        for (float[] q : qs) {
            for (int j = 0; j < dim; j++) {
                q[j] = (float) rng.nextGaussian();
            }
        }
        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        // bandwidth: the same bytes read by the same loop shape without the multiply; best of several rounds
        // before, between and after the timed queries (on a shared machine the quiet moments give the floor)
        double bandwidth = bandwidth(t, 8);
        // tails: top 10 + margin, distance form (RotatE, TransE p=2)
        double[] tails = time(queries, mx, q -> Scoring.top(t, Scoring.Form.DISTANCE, qs[q], 18, null).length, 20);
        bandwidth = Math.max(bandwidth, bandwidth(t, 5));
        // rank: items evidence queries in one pass, model weight 0.3
        double[] ev = new double[n];
        BitSet skip = new BitSet(n);
        int[] order = new int[n];
        for (int e = 0; e < n; e++) {
            order[e] = e;
        }
        double[] rank = time(Math.max(10, queries / 5), mx, q -> {
            float[][] group = new float[items][];
            for (int i = 0; i < items; i++) {
                group[i] = qs[(q * items + i) % qs.length];
            }
            return Ranking.scan(t, Scoring.Form.DISTANCE, group, 0.5, 0.0, 0.3, ev, skip, 18, order).size;
        }, 15);
        bandwidth = Math.max(bandwidth, bandwidth(t, 5));
        double floor = t.bytes() / bandwidth;
        System.out.printf(java.util.Locale.ROOT,
                "n=%d dim=%d threads=%d bytes=%d bandwidth_gbs=%.2f floor_ms=%.2f tails_wall_ms=%.2f tails_cpu_ms=%.2f"
                        + " rank_items=%d rank_wall_ms=%.2f rank_cpu_ms=%.2f%n",
                n, dim, Runtime.getRuntime().availableProcessors(), t.bytes(), bandwidth / 1e9, floor * 1e3,
                tails[0], tails[1], items, rank[0], rank[1]);
    }

    /** Bytes per second of one parallel read of the table, best of {@code rounds} (the first three untimed). */
    private static double bandwidth(Table t, int rounds) {
        double best = 0;
        for (int rep = 0; rep < rounds + 3; rep++) {
            long began = System.nanoTime();
            double s = 0;
            for (double x : Scoring.parallel(t, (from, to) -> {
                float[] acc = new float[Table.BLOCK];
                for (int b = from; b < to; b++) {
                    for (float[] col : t.blocks[b]) {
                        for (int i = 0; i < Table.BLOCK; i++) {
                            acc[i] += col[i];
                        }
                    }
                }
                return (double) acc[0];
            })) {
                s += x;
            }
            sink = s;
            double seconds = (System.nanoTime() - began) / 1e9;
            if (rep >= 3) {
                best = Math.max(best, t.bytes() / seconds);
            }
        }
        return best;
    }

    @FunctionalInterface
    interface Query {
        int run(int q);
    }

    /** Median wall ms and mean CPU ms (all threads of this JVM) per query, after {@code warmup} untimed calls. */
    private static double[] time(int queries, ThreadMXBean mx, Query query, int warmup) {
        for (int q = 0; q < warmup; q++) {
            sink = query.run(q);
        }
        double[] wall = new double[queries];
        long cpu0 = cpu(mx);
        for (int q = 0; q < queries; q++) {
            long began = System.nanoTime();
            sink = query.run(q);
            wall[q] = (System.nanoTime() - began) / 1e6;
        }
        double cpu = (cpu(mx) - cpu0) / 1e6 / queries;
        java.util.Arrays.sort(wall);
        return new double[] {wall[queries / 2], cpu};
    }

    private static long cpu(ThreadMXBean mx) {
        long total = 0;
        for (long id : mx.getAllThreadIds()) {
            long c = mx.getThreadCpuTime(id);
            if (c > 0) {
                total += c;
            }
        }
        return total;
    }
}
