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
 * <p>A scan compares every candidate with one query vector (the known side combined with the relation, as
 * {@code kgemb.model.query_vector} does): a dot product (DistMult, ComplEx), a squared Euclidean distance
 * (RotatE, TransE p=2) or an L1 distance (TransE p=1). The best candidates are then re-scored exactly, in double
 * precision, with the interaction itself.
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

    /** Higher is better: the scan value of candidate {@code c} against query {@code q}. */
    private static float scan(Interaction it, int p, float[] q, float[] v, int o, int dim) {
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int i = 0;
        if (it == Interaction.DISTMULT || it == Interaction.COMPLEX) {
            for (; i + 3 < dim; i += 4) {
                s0 += q[i] * v[o + i];
                s1 += q[i + 1] * v[o + i + 1];
                s2 += q[i + 2] * v[o + i + 2];
                s3 += q[i + 3] * v[o + i + 3];
            }
            for (; i < dim; i++) {
                s0 += q[i] * v[o + i];
            }
            return (s0 + s1) + (s2 + s3);
        }
        if (it == Interaction.TRANSE && p == 1) {
            for (; i + 3 < dim; i += 4) {
                s0 += Math.abs(q[i] - v[o + i]);
                s1 += Math.abs(q[i + 1] - v[o + i + 1]);
                s2 += Math.abs(q[i + 2] - v[o + i + 2]);
                s3 += Math.abs(q[i + 3] - v[o + i + 3]);
            }
            for (; i < dim; i++) {
                s0 += Math.abs(q[i] - v[o + i]);
            }
            return -((s0 + s1) + (s2 + s3));
        }
        for (; i + 3 < dim; i += 4) {
            float d0 = q[i] - v[o + i], d1 = q[i + 1] - v[o + i + 1];
            float d2 = q[i + 2] - v[o + i + 2], d3 = q[i + 3] - v[o + i + 3];
            s0 += d0 * d0;
            s1 += d1 * d1;
            s2 += d2 * d2;
            s3 += d3 * d3;
        }
        for (; i < dim; i++) {
            float d = q[i] - v[o + i];
            s0 += d * d;
        }
        return -((s0 + s1) + (s2 + s3));
    }

    /** The value a candidate is ranked by (higher is better). */
    @FunctionalInterface
    interface Value {
        float of(int candidate);
    }

    /** A scan value as the raw score it approximates: distance forms return minus the squared distance. */
    static double scoreOfScan(Interaction it, int p, float v) {
        boolean squared = it == Interaction.ROTATE || (it == Interaction.TRANSE && p != 1);
        return squared ? -Math.sqrt(Math.max(0f, -v)) : v;
    }

    static float scanValue(Interaction it, int p, float[] q, float[] vectors, int c, int dim) {
        return scan(it, p, q, vectors, c * dim, dim);
    }

    /** The best {@code k} of {@code n} candidates by {@code value}, best first, on every core; {@code skip} left out. */
    static int[] topBy(Value value, int n, int k, BitSet skip) {
        int kk = Math.min(k, n);
        return bestOf(n, n < PARALLEL_MIN / 4 ? 1 : THREADS, kk, (from, to) -> {
            TopK top = new TopK(kk);
            for (int c = from; c < to; c++) {
                if (skip == null || !skip.get(c)) {
                    float v = value.of(c);
                    if (top.size < kk || v > top.min) {
                        top.offer(v, c);
                    }
                }
            }
            return top;
        });
    }

    /** log(sigmoid(x)), stable for large |x|. */
    static double logSigmoid(double x) {
        return x < 0 ? x - Math.log1p(Math.exp(x)) : -Math.log1p(Math.exp(-x));
    }

    /** The best {@code k} entity indexes by scan value, best first; {@code skip} (may be null) are left out. */
    static int[] top(Interaction it, int p, float[] q, float[] vectors, int n, int dim, int k, BitSet skip) {
        int kk = Math.min(k, n);
        return bestOf(n, n < PARALLEL_MIN ? 1 : THREADS, kk,
                (from, to) -> scanRange(it, p, q, vectors, from, to, dim, kk, skip));
    }

    /** The top {@code k} of one range of candidates. */
    @FunctionalInterface
    interface RangeScan {
        TopK scan(int from, int to);
    }

    /** Split {@code 0..n} into {@code parts} ranges (scanned on the pool when there are several), merge their top
     *  {@code k}, best first. */
    private static int[] bestOf(int n, int parts, int k, RangeScan scan) {
        if (k <= 0) {
            return new int[0];
        }
        List<TopK> partial = new ArrayList<>();
        if (parts == 1) {
            partial.add(scan.scan(0, n));
        } else {
            List<Future<TopK>> futures = new ArrayList<>();
            int step = (n + parts - 1) / parts;
            for (int s = 0; s < n; s += step) {
                int from = s, to = Math.min(n, s + step);
                futures.add(POOL.submit(() -> scan.scan(from, to)));
            }
            try {
                for (Future<TopK> f : futures) {
                    partial.add(f.get());
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("the kgemb scan was interrupted", e);
            } catch (ExecutionException e) {
                throw new IllegalStateException("the kgemb scan failed: " + e.getCause(), e.getCause());
            }
        }
        TopK all = new TopK(k);
        for (TopK t : partial) {
            for (int j = 0; j < t.size; j++) {
                all.offer(t.values[j], t.ids[j]);
            }
        }
        return all.sortedIds();
    }

    private static TopK scanRange(Interaction it, int p, float[] q, float[] vectors, int from, int to, int dim, int k,
            BitSet skip) {
        TopK top = new TopK(k);
        for (int c = from; c < to; c++) {
            if (skip != null && skip.get(c)) {
                continue;
            }
            float v = scan(it, p, q, vectors, c * dim, dim);
            if (top.size < k || v > top.min) {
                top.offer(v, c);
            }
        }
        return top;
    }

    /** Cosine similarity of two rows. */
    static double cosine(float[] v, int a, int b, int dim) {
        double dot = 0, na = 0, nb = 0;
        for (int i = 0; i < dim; i++) {
            double x = v[a + i], y = v[b + i];
            dot += x * y;
            na += x * x;
            nb += y * y;
        }
        return na == 0 || nb == 0 ? 0 : dot / Math.sqrt(na * nb);
    }

    /** A bounded "best k" collection of (value, id); ties keep the smaller id, like a stable sort. */
    static final class TopK {
        final float[] values;
        final int[] ids;
        int size;
        float min = Float.NEGATIVE_INFINITY;
        int minAt;

        TopK(int k) {
            values = new float[k];
            ids = new int[k];
        }

        void offer(float v, int id) {
            if (Float.isNaN(v)) {
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
            if (v < min || (v == min && id > ids[minAt])) {
                return;
            }
            values[minAt] = v;
            ids[minAt] = id;
            findMin();
        }

        private void findMin() {
            minAt = 0;
            for (int j = 1; j < size; j++) {
                if (values[j] < values[minAt] || (values[j] == values[minAt] && ids[j] > ids[minAt])) {
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
            java.util.Arrays.sort(order, (x, y) -> values[x] != values[y] ? Float.compare(values[y], values[x])
                    : Integer.compare(ids[x], ids[y]));
            int[] out = new int[size];
            for (int j = 0; j < size; j++) {
                out[j] = ids[order[j]];
            }
            return out;
        }
    }
}
