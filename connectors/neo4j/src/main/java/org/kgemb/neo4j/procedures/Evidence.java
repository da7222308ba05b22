package org.kgemb.neo4j.procedures;

import java.util.Arrays;
import java.util.BitSet;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The port of {@code reasoning/evidence.py}: multi-evidence ranking by the information-content log-likelihood
 *
 * <pre>
 *   s_i(x) = IC(q_i)                                    if q_i ∈ P(x)  (x carries q_i, directly or below it)
 *          = lam * max { IC(t) : t ∈ anc(q_i) ∩ P(x) }  otherwise (0 when nothing is shared)
 *   c(x)   = min(1, m / n(x)) ** beta                    (1 when n(x) = 0)
 *   l_i(x) = ln(eps + (1 - eps) c(x) exp(s_i(x))) + alpha ln p_i(x)
 *   L(x)   = sum_i l_i(x),   P(x) = exp(L(x)) / sum_y exp(L(y))
 * </pre>
 *
 * with {@code IC(t) = ln((N + 1) / (f(t) + 1))}, annotations propagated to their ancestors along the hierarchy
 * relations (child -> parent). Entity "ids" here are the model's row indexes; where Python breaks a tie by the
 * graph's entity id, this class uses {@code order[e]} (the id the push wrote). Shared test vectors:
 * {@code tests/reasoning/data/evidence_vectors.json}.
 */
final class Evidence {
    static final int UNMATCHED = 0;
    static final int HIERARCHY = 1;
    static final int EXACT = 2;
    static final String[] KIND_NAMES = {"unmatched", "hierarchy", "exact"};

    private Evidence() {}

    /** Sorted int array from a growable buffer. */
    static final class Ints {
        int[] a = new int[16];
        int size;

        void add(int x) {
            if (size == a.length) {
                a = Arrays.copyOf(a, size * 2);
            }
            a[size++] = x;
        }

        int[] toArray() {
            return Arrays.copyOf(a, size);
        }
    }

    /** Compressed rows: {@code values[ptr[k] .. ptr[k + 1])} belong to key {@code k}, sorted. */
    static final class Csr {
        final int[] ptr;
        final int[] values;

        /** From (key, value) pairs packed as {@code key << 32 | value}, sorted and de-duplicated when asked. */
        Csr(long[] pairs, int count, int size, boolean unique) {
            long[] p = Arrays.copyOf(pairs, count);
            Arrays.sort(p);
            int w = 0;
            for (int i = 0; i < p.length; i++) {
                if (!unique || w == 0 || p[i] != p[w - 1]) {
                    p[w++] = p[i];
                }
            }
            ptr = new int[size + 1];
            values = new int[w];
            for (int i = 0; i < w; i++) {
                ptr[(int) (p[i] >>> 32) + 1]++;
                values[i] = (int) p[i];
            }
            for (int k = 0; k < size; k++) {
                ptr[k + 1] += ptr[k];
            }
        }

        int from(int k) {
            return ptr[k];
        }

        int to(int k) {
            return ptr[k + 1];
        }

        int count(int k) {
            return ptr[k + 1] - ptr[k];
        }

        boolean contains(int k, int v) {
            return Arrays.binarySearch(values, ptr[k], ptr[k + 1], v) >= 0;
        }
    }

    static long pair(int key, int value) {
        return ((long) key << 32) | (value & 0xffffffffL);
    }

    /** Parents and ancestors (reflexive, transitive; cycles tolerated) along the hierarchy edges. */
    static final class Hierarchy {
        private final Csr parents;
        private final int[] order;
        private final Map<Integer, int[]> ancestors = new ConcurrentHashMap<>();

        /** {@code edges}: (child, parent) pairs; {@code order}: the id ancestors are sorted by. */
        Hierarchy(long[] edges, int count, int n, int[] order) {
            this.parents = new Csr(edges, count, n, true);
            this.order = order;
        }

        /** {@code anc(e)}: e and every ancestor, sorted by {@code order}. */
        int[] ancestors(int e) {
            return ancestors.computeIfAbsent(e, key -> {
                BitSet seen = new BitSet();
                Ints found = new Ints();
                Ints frontier = new Ints();
                seen.set(key);
                found.add(key);
                frontier.add(key);
                while (frontier.size > 0) {
                    int node = frontier.a[--frontier.size];
                    for (int j = parents.from(node); j < parents.to(node); j++) {
                        int p = parents.values[j];
                        if (p != node && !seen.get(p)) {
                            seen.set(p);
                            found.add(p);
                            frontier.add(p);
                        }
                    }
                }
                return sortBy(found.toArray(), order);
            });
        }
    }

    static int[] sortBy(int[] ids, int[] order) {
        long[] keyed = new long[ids.length];
        for (int i = 0; i < ids.length; i++) {
            keyed[i] = pair(order[ids[i]], ids[i]);
        }
        Arrays.sort(keyed);
        int[] out = new int[ids.length];
        for (int i = 0; i < ids.length; i++) {
            out[i] = (int) keyed[i];
        }
        return out;
    }

    /** For one relation and side: who carries which term, directly and propagated, and each term's IC. */
    static final class Annotations {
        final int n;
        final int[] counts;
        final int[] annotated;
        final Csr direct;
        final Csr carriers;
        final double[] ic;
        final Hierarchy hierarchy;

        /** {@code links}: (holder, term) pairs; {@code n}: the number of entities. */
        Annotations(int[] holders, int[] terms, int count, int n, Hierarchy hierarchy) {
            this.n = n;
            this.hierarchy = hierarchy;
            counts = new int[n];
            long[] byTerm = new long[count];
            for (int i = 0; i < count; i++) {
                counts[holders[i]]++;
                byTerm[i] = pair(terms[i], holders[i]);
            }
            direct = new Csr(byTerm, count, n, false);
            long[] prop = new long[Math.max(16, count)];
            int np = 0;
            for (int t = 0; t < n; t++) {
                if (direct.count(t) == 0) {
                    continue;
                }
                int[] anc = hierarchy.ancestors(t);
                for (int j = direct.from(t); j < direct.to(t); j++) {
                    int h = direct.values[j];
                    for (int a : anc) {
                        if (np == prop.length) {
                            prop = Arrays.copyOf(prop, np * 2);
                        }
                        prop[np++] = pair(a, h);
                    }
                }
            }
            carriers = new Csr(prop, np, n, true);
            Ints ann = new Ints();
            for (int x = 0; x < n; x++) {
                if (counts[x] > 0) {
                    ann.add(x);
                }
            }
            annotated = ann.toArray();
            ic = new double[n];
            double total = annotated.length + 1.0;
            for (int t = 0; t < n; t++) {
                ic[t] = Math.log(total / (carriers.count(t) + 1.0));
            }
        }

        /** {@code anc(q)} ordered by IC ascending (ties: in {@code anc}'s order), the order Python assigns in. */
        int[] byInformation(int q) {
            int[] anc = hierarchy.ancestors(q);
            Integer[] pos = new Integer[anc.length];
            for (int j = 0; j < anc.length; j++) {
                pos[j] = j;
            }
            Arrays.sort(pos, (x, y) -> ic[anc[x]] != ic[anc[y]] ? Double.compare(ic[anc[x]], ic[anc[y]])
                    : Integer.compare(x, y));
            int[] out = new int[anc.length];
            for (int j = 0; j < anc.length; j++) {
                out[j] = anc[pos[j]];
            }
            return out;
        }
    }

    /** The constants of the formula and the model's weight. */
    record Params(double eps, double beta, double lam, double alpha) {}

    /** {@code c(x)} for {@code m} items. */
    static double coverage(Annotations ann, int x, int m, double beta) {
        int c = ann.counts[x];
        return c > 0 ? Math.pow(Math.min(1.0, (double) m / c), beta) : 1.0;
    }

    /** The ontology part of {@code L(x)} ({@code sum_i ln(eps + (1 - eps) c(x) exp(s_i(x)))}) for every entity:
     *  0 for entities without annotations, work proportional to the annotations the evidence touches. */
    static double[] totals(Annotations ann, int[] items, Params p) {
        int m = items.length;
        double[] total = new double[ann.n];
        double[] base = new double[ann.n];
        for (int x : ann.annotated) {
            base[x] = Math.log(p.eps() + (1.0 - p.eps()) * coverage(ann, x, m, p.beta()));
            total[x] = m * base[x];
        }
        double[] s = new double[ann.n];
        BitSet touched = new BitSet(ann.n);
        Ints list = new Ints();
        for (int q : items) {
            for (int a : ann.byInformation(q)) {
                if (a == q) {
                    continue;
                }
                double v = p.lam() * ann.ic[a];
                for (int j = ann.carriers.from(a); j < ann.carriers.to(a); j++) {
                    int x = ann.carriers.values[j];
                    s[x] = v;
                    if (!touched.get(x)) {
                        touched.set(x);
                        list.add(x);
                    }
                }
            }
            for (int j = ann.carriers.from(q); j < ann.carriers.to(q); j++) {
                int x = ann.carriers.values[j];
                s[x] = ann.ic[q];
                if (!touched.get(x)) {
                    touched.set(x);
                    list.add(x);
                }
            }
            for (int j = 0; j < list.size; j++) {
                int x = list.a[j];
                if (s[x] > 0) {
                    double c = coverage(ann, x, m, p.beta());
                    total[x] += Math.log(p.eps() + (1.0 - p.eps()) * c * Math.exp(s[x])) - base[x];
                }
                s[x] = 0;
                touched.clear(x);
            }
            list.size = 0;
        }
        return total;
    }

    /** What item {@code q} says about candidate {@code x}: its match value, kind and the matching term. */
    record Match(double value, int kind, int via) {}

    /** What item {@code q} says about candidate {@code x}: match value, kind and the matching term (-1: none). */
    static Match match(Annotations ann, int q, int x, double lam) {
        double value = 0;
        int via = -1;
        for (int a : ann.byInformation(q)) {
            if (a != q && ann.carriers.contains(a, x)) {
                value = lam * ann.ic[a];
                via = a;
            }
        }
        if (ann.carriers.contains(q, x)) {
            value = ann.ic[q];
            via = q;
        }
        int kind = HIERARCHY;
        if (value <= 0) {
            kind = UNMATCHED;
            via = -1;
        }
        if (ann.direct.contains(q, x)) {
            kind = EXACT;
        }
        return new Match(value, kind, via);
    }

    /** {@code ln(eps + (1 - eps) c(x) exp(s))}: one item's ontology log-likelihood. */
    static double itemLogLikelihood(Annotations ann, int x, int m, double s, Params p) {
        return Math.log(p.eps() + (1.0 - p.eps()) * coverage(ann, x, m, p.beta()) * Math.exp(s));
    }
}
