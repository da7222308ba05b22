package org.kgemb.neo4j.procedures;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * Scoring of kgemb's interactions over vectors in the real layout (complex numbers interleaved {@code re, im}),
 * the same formulas as PyKEEN's interactions that kgemb's Python side uses.
 *
 * <p>A scan compares every candidate with one query vector, built once per call (the known side combined with
 * the relation, as {@code kgemb.model.query_vector} does): a dot product (DistMult, ComplEx), a Euclidean distance
 * through {@code |q|² - 2 q·e + |e|²} with the squared norms kept by the {@link Table} (RotatE, TransE p=2) or an
 * L1 distance (TransE p=1). The table's blocks are split over a pool of one thread per core, each keeping its own
 * top k, merged at the end. The best candidates are then re-scored exactly, in double precision, with the
 * interaction itself.
 */
public final class Scoring {
    /** Extra candidates re-scored exactly, so rounding in the scan never changes the top k (Python's _MARGIN). */
    static final int MARGIN = 8;
    private static final int THREADS = Math.max(1, Runtime.getRuntime().availableProcessors());
    private static final ExecutorService POOL = Executors.newFixedThreadPool(THREADS, r -> {
        Thread t = new Thread(r, "kgemb-scan");
        t.setDaemon(true);
        return t;
    });
    /** Below this many candidates a scan runs on the calling thread. */
    private static final int PARALLEL_MIN = 20_000;

    private Scoring() {}

    enum Interaction {
        TRANSE, DISTMULT, COMPLEX, ROTATE;

        static Interaction of(String name) {
            return switch (name == null ? "" : name.toLowerCase()) {
                case "transe" -> TRANSE;
                case "distmult" -> DISTMULT;
                case "complex" -> COMPLEX;
                case "rotate" -> ROTATE;
                default -> throw new IllegalArgumentException("kgemb procedures score transe, distmult, complex and"
                        + " rotate models; this model's interaction is " + name + " (use the Python API for it)");
            };
        }

        boolean complex() {
            return this == COMPLEX || this == ROTATE;
        }
    }

    /** The exact score of (h, r, t) in double precision: what PyKEEN's interaction returns. */
    static double exact(Interaction it, int p, float[] hv, int ho, float[] rv, int ro, float[] tv, int to, int dim) {
        double s = 0;
        switch (it) {
            case DISTMULT -> {
                for (int i = 0; i < dim; i++) {
                    s += (double) hv[ho + i] * rv[ro + i] * tv[to + i];
                }
                return s;
            }
            case COMPLEX -> {
                for (int i = 0; i < dim; i += 2) {
                    double a = hv[ho + i], b = hv[ho + i + 1], c = rv[ro + i], d = rv[ro + i + 1];
                    double e = tv[to + i], f = tv[to + i + 1];
                    s += (a * c - b * d) * e + (a * d + b * c) * f;
                }
                return s;
            }
            case ROTATE -> {
                for (int i = 0; i < dim; i += 2) {
                    double a = hv[ho + i], b = hv[ho + i + 1], c = rv[ro + i], d = rv[ro + i + 1];
                    double re = a * c - b * d - tv[to + i], im = a * d + b * c - tv[to + i + 1];
                    s += re * re + im * im;
                }
                return -Math.sqrt(s);
            }
            default -> {
                for (int i = 0; i < dim; i++) {
                    double x = (double) hv[ho + i] + rv[ro + i] - tv[to + i];
                    s += p == 1 ? Math.abs(x) : x * x;
                }
                return p == 1 ? -s : -Math.sqrt(s);
            }
        }
    }

    /** The query vector a candidate is compared with in a scan (tail side: from the head; head side: from the tail). */
    static float[] query(Interaction it, boolean tailSide, float[] av, int ao, float[] rv, int ro, int dim) {
        float[] q = new float[dim];
        switch (it) {
            case TRANSE -> {
                for (int i = 0; i < dim; i++) {
                    q[i] = tailSide ? av[ao + i] + rv[ro + i] : av[ao + i] - rv[ro + i];
                }
            }
            case DISTMULT -> {
                for (int i = 0; i < dim; i++) {
                    q[i] = av[ao + i] * rv[ro + i];
                }
            }
            default -> {
                for (int i = 0; i < dim; i += 2) {
                    float a = av[ao + i], b = av[ao + i + 1], c = rv[ro + i], d = tailSide ? rv[ro + i + 1] : -rv[ro + i + 1];
                    q[i] = a * c - b * d;
                    q[i + 1] = a * d + b * c;
                }
            }
        }
        return q;
    }

    /** How a scan compares a candidate with the query vector. */
    enum Form {
        /** {@code q · e} (DistMult, ComplEx). */
        DOT,
        /** {@code 2 q · e - |e|²}, which orders like {@code -|q - e|} (RotatE, TransE p = 2). */
        DISTANCE,
        /** {@code -sum |q - e|} (TransE p = 1). */
        L1;

        static Form of(Interaction it, int p) {
            return switch (it) {
                case DISTMULT, COMPLEX -> DOT;
                case ROTATE -> DISTANCE;
                default -> p == 1 ? L1 : DISTANCE;
            };
        }
    }

    /** The query as the kernel takes it: doubled for {@link Form#DISTANCE} (exact in floating point). */
    static float[] kernelQuery(Form form, float[] q) {
        if (form != Form.DISTANCE) {
            return q;
        }
        float[] out = new float[q.length];
        for (int i = 0; i < q.length; i++) {
            out[i] = 2f * q[i];
        }
        return out;
    }

    /** Scan values (higher is better) of the rows of block {@code b} into {@code acc}. */
    static void values(Table t, Form form, float[] kq, int b, float[] acc) {
        switch (form) {
            case DOT -> t.dot(b, kq, acc);
            case DISTANCE -> {
                t.dot(b, kq, acc);
                int at = b * Table.BLOCK;
                for (int i = 0; i < Table.BLOCK; i++) {
                    acc[i] -= t.squaredNorms[at + i];
                }
            }
            default -> {
                t.l1(b, kq, acc);
                for (int i = 0; i < Table.BLOCK; i++) {
                    acc[i] = -acc[i];
                }
            }
        }
    }

    /** The raw score a scan value approximates ({@code squaredQuery}: {@code |q|²}, for {@link Form#DISTANCE}). */
    static double scoreOfValue(Form form, double value, double squaredQuery) {
        return form == Form.DISTANCE ? -Math.sqrt(Math.max(0.0, squaredQuery - value)) : value;
    }

    static double squared(float[] q) {
        double s = 0;
        for (float x : q) {
            s += (double) x * x;
        }
        return s;
    }

    /** log(sigmoid(x)), stable for large |x|. */
    static double logSigmoid(double x) {
        return x < 0 ? x - Math.log1p(Math.exp(x)) : -Math.log1p(Math.exp(-x));
    }

    /** The best {@code k} entity indexes by scan value against query {@code q}, best first; {@code skip} (may be
     *  null) left out. */
    static int[] top(Table t, Form form, float[] q, int k, BitSet skip) {
        int kk = Math.min(k, t.n);
        if (kk <= 0) {
            return new int[0];
        }
        float[] kq = kernelQuery(form, q);
        List<TopK> parts = parallel(t, (from, to) -> {
            TopK top = new TopK(kk);
            float[] acc = new float[Table.BLOCK];
            for (int b = from; b < to; b++) {
                values(t, form, kq, b, acc);
                int base = b * Table.BLOCK, rows = t.rows(b);
                double min = top.size < kk ? Double.NEGATIVE_INFINITY : top.min;
                for (int i = 0; i < rows; i++) {
                    float v = acc[i];
                    if (v >= min && (skip == null || !skip.get(base + i))) {
                        top.offer(v, base + i);
                                min = top.size < kk ? Double.NEGATIVE_INFINITY : top.min;
                    }
                }
            }
            return top;
        });
        return merge(parts, kk).sortedIds();
    }

    /** The work of one range of blocks. */
    @FunctionalInterface
    interface BlockRange<T> {
        T scan(int fromBlock, int toBlock);
    }

    /** Split the table's blocks into one range per core (scanned on the pool when the table is large), each
     *  range's result in block order. */
    static <T> List<T> parallel(Table t, BlockRange<T> scan) {
        int blocks = t.numBlocks();
        int parts = t.n < PARALLEL_MIN ? 1 : Math.min(THREADS, blocks);
        List<T> out = new ArrayList<>();
        if (parts <= 1) {
            out.add(scan.scan(0, blocks));
            return out;
        }
        List<Future<T>> futures = new ArrayList<>();
        int step = (blocks + parts - 1) / parts;
        for (int s = step; s < blocks; s += step) { // the calling thread scans the first range itself
            int from = s, to = Math.min(blocks, s + step);
            futures.add(POOL.submit(() -> scan.scan(from, to)));
        }
        out.add(scan.scan(0, Math.min(blocks, step)));
        try {
            for (Future<T> f : futures) {
                out.add(f.get());
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("the kgemb scan was interrupted", e);
        } catch (ExecutionException e) {
            throw new IllegalStateException("the kgemb scan failed: " + e.getCause(), e.getCause());
        }
        return out;
    }

    /** The best {@code k} of several partial top-k lists. */
    static TopK merge(List<? extends TopK> parts, int k) {
        TopK all = new TopK(k);
        for (TopK t : parts) {
            for (int j = 0; j < t.size; j++) {
                all.offer(t.values[j], t.ids[j]);
            }
        }
        return all;
    }

    /** Cosine similarity of two vectors, in double precision. */
    static double cosine(float[] x, float[] y) {
        double dot = 0, nx = 0, ny = 0;
        for (int i = 0; i < x.length; i++) {
            dot += (double) x[i] * y[i];
            nx += (double) x[i] * x[i];
            ny += (double) y[i] * y[i];
        }
        return nx == 0 || ny == 0 ? 0 : dot / Math.sqrt(nx * ny);
    }

    /** The best {@code k} rows by cosine similarity to {@code q} (scan value {@code q·e / |e|}), best first. */
    static int[] topCosine(Table t, float[] q, int k, BitSet skip) {
        int kk = Math.min(k, t.n);
        if (kk <= 0) {
            return new int[0];
        }
        List<TopK> parts = parallel(t, (from, to) -> {
            TopK top = new TopK(kk);
            float[] acc = new float[Table.BLOCK];
            for (int b = from; b < to; b++) {
                t.dot(b, q, acc);
                int base = b * Table.BLOCK, rows = t.rows(b);
                for (int i = 0; i < rows; i++) {
                    float norm = t.squaredNorms[base + i];
                    if (skip == null || !skip.get(base + i)) {
                        top.offer(norm > 0 ? acc[i] / Math.sqrt(norm) : 0.0, base + i);
                    }
                }
            }
            return top;
        });
        return merge(parts, kk).sortedIds();
    }

    /** A bounded "best k" collection of (value, id); ties keep the smaller id (or smaller {@code tieKey[id]}),
     *  like a stable sort. */
    static class TopK {
        final double[] values;
        final int[] ids;
        final int[] tieKey;
        int size;
        double min = Double.NEGATIVE_INFINITY;
        int minAt;

        TopK(int k) {
            this(k, null);
        }

        TopK(int k, int[] tieKey) {
            values = new double[k];
            ids = new int[k];
            this.tieKey = tieKey;
        }

        private int key(int id) {
            return tieKey == null ? id : tieKey[id];
        }

        void offer(double v, int id) {
            if (Double.isNaN(v)) {
                return;
            }
            if (size < values.length) {
                values[size] = v;
                ids[size++] = id;
                if (size == values.length) {
                    findMin();
                }
                return;
            }
            if (v < min || (v == min && key(id) > key(ids[minAt]))) {
                return;
            }
            values[minAt] = v;
            ids[minAt] = id;
            findMin();
        }

        private void findMin() {
            minAt = 0;
            for (int j = 1; j < size; j++) {
                if (values[j] < values[minAt] || (values[j] == values[minAt] && key(ids[j]) > key(ids[minAt]))) {
                    minAt = j;
                }
            }
            min = values[minAt];
        }

        int[] sortedIds() {
            Integer[] order = new Integer[size];
            for (int j = 0; j < size; j++) {
                order[j] = j;
            }
            java.util.Arrays.sort(order, (x, y) -> values[x] != values[y] ? Double.compare(values[y], values[x])
                    : Integer.compare(key(ids[x]), key(ids[y])));
            int[] out = new int[size];
            for (int j = 0; j < size; j++) {
                out[j] = ids[order[j]];
            }
            return out;
        }
    }
}
