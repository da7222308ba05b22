package org.kgemb.neo4j.procedures;

import java.util.Arrays;
import java.util.BitSet;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The port of {@code reasoning/evidence.py}: multi-evidence ranking by a generative log-likelihood
 *
 * <pre>
 *   w(q | a) = 1 - rho  (q = a; 1 when a has no ancestors),  rho gamma^d(a,q) / sum_t gamma^d(a,t)  (q above a)
 *   p(q | x) = sum_{a in A(x)} w(q | a) / n(x),   b(q) = mean of p(q | x) over the annotated entities
 *   R_i(x)   = p(q_i | x) / b(q_i)                                   if q_i ∈ P(x)
 *            = kappa max { IC(t) / IC(q_i) : t ∈ anc(q_i) ∩ P(x), t ≠ q_i }   otherwise (0 when none)
 *   l_i(x)   = ln(eps + (1 - eps) R_i(x)) + alpha ln p_i(x)
 *   L(x)     = sum_i l_i(x),   P(x) = exp(L(x)) / sum_y exp(L(y))
 * </pre>
 *
 * with {@code IC(t) = ln((N + 1) / (f(t) + 1))}, annotations propagated to their ancestors along the hierarchy
 * relations (child -> parent), {@code d} the fewest steps up. Entity "ids" here are the model's row indexes; where Python breaks a tie by the
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

    /** {@code anc(e)} sorted by the graph's ids, and the fewest steps up from e to each (0 for e). */
    record Ancestors(int[] ids, int[] steps) {}

    /** Parents and ancestors (reflexive, transitive; cycles tolerated) along the hierarchy edges. */
    static final class Hierarchy {
        private final Csr parents;
        private final int[] order;
        private final Map<Integer, Ancestors> ancestors = new ConcurrentHashMap<>();

        /** {@code edges}: (child, parent) pairs; {@code order}: the id ancestors are sorted by. */
        Hierarchy(long[] edges, int count, int n, int[] order) {
            this.parents = new Csr(edges, count, n, true);
            this.order = order;
        }

        /** {@code anc(e)}: e and every ancestor, sorted by {@code order}. */
        int[] ancestors(int e) {
            return distances(e).ids();
        }

        /** {@code anc(e)} with the steps up to each: breadth first, so the first visit is the shortest path. */
        Ancestors distances(int e) {
            return ancestors.computeIfAbsent(e, key -> {
                Map<Integer, Integer> steps = new java.util.HashMap<>();
                steps.put(key, 0);
                Ints frontier = new Ints();
                frontier.add(key);
                while (frontier.size > 0) {
                    Ints above = new Ints();
                    for (int i = 0; i < frontier.size; i++) {
                        int node = frontier.a[i];
                        for (int j = parents.from(node); j < parents.to(node); j++) {
                            int p = parents.values[j];
                            if (!steps.containsKey(p)) {
                                steps.put(p, steps.get(node) + 1);
                                above.add(p);
                            }
                        }
                    }
                    frontier = above;
                }
                int[] found = new int[steps.size()];
                int w = 0;
                for (int t : steps.keySet()) {
                    found[w++] = t;
                }
                int[] ids = sortBy(found, order);
                int[] up = new int[ids.length];
                for (int i = 0; i < ids.length; i++) {
                    up[i] = steps.get(ids[i]);
                }
                return new Ancestors(ids, up);
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

    /** For one relation and side: who carries which term, directly and propagated, each term's IC, and the
     *  generative model's {@code p(q | x)} (aligned with {@code carriers.values}) and {@code b(q)}. */
    static final class Annotations {
        final int n;
        final int[] counts;
        final int[] annotated;
        final Csr direct;
        final Csr carriers;
        final double[] probability;
        final double[] background;
        final double[] ic;
        final Hierarchy hierarchy;

        /** {@code links}: (holder, term) pairs; {@code n}: the number of entities. */
        Annotations(int[] holders, int[] terms, int count, int n, Hierarchy hierarchy, double rho, double gamma) {
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
            probability = new double[carriers.values.length];
            for (int t = 0; t < n; t++) {
                if (direct.count(t) == 0) {
                    continue;
                }
                Ancestors anc = hierarchy.distances(t);
                double[] w = new double[anc.ids().length];
                double sum = 0;
                for (int i = 0; i < w.length; i++) {
                    w[i] = anc.steps()[i] > 0 ? Math.pow(gamma, anc.steps()[i]) : 0.0;
                    sum += w[i];
                }
                for (int i = 0; i < w.length; i++) {
                    double own = anc.steps()[i] == 0 ? 1.0 : 0.0;
                    w[i] = sum > 0 ? rho * w[i] / sum + (1.0 - rho) * own : own;
                }
                for (int j = direct.from(t); j < direct.to(t); j++) {
                    int h = direct.values[j];
                    for (int i = 0; i < w.length; i++) {
                        int a = anc.ids()[i];
                        probability[Arrays.binarySearch(carriers.values, carriers.from(a), carriers.to(a), h)] += w[i];
                    }
                }
            }
            background = new double[n];
            for (int t = 0; t < n; t++) {
                for (int j = carriers.from(t); j < carriers.to(t); j++) {
                    probability[j] /= Math.max(counts[carriers.values[j]], 1);
                    background[t] += probability[j];
                }
                background[t] /= Math.max(annotated.length, 1);
            }
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
    record Params(double eps, double rho, double gamma, double kappa, double alpha) {}

    /** {@code R_i(x)} for the entities {@code list} touched by item {@code q}, written into {@code r}. */
    private static void ratios(Annotations ann, int q, double kappa, double[] r, BitSet touched, Ints list) {
        if (ann.ic[q] > 0) {
            for (int a : ann.byInformation(q)) {
                if (a == q || ann.ic[a] <= 0) {
                    continue;
                }
                double v = kappa * ann.ic[a] / ann.ic[q];
                for (int j = ann.carriers.from(a); j < ann.carriers.to(a); j++) {
                    int x = ann.carriers.values[j];
                    r[x] = v;
                    if (!touched.get(x)) {
                        touched.set(x);
                        list.add(x);
                    }
                }
            }
        }
        if (ann.background[q] > 0) {
            for (int j = ann.carriers.from(q); j < ann.carriers.to(q); j++) {
                int x = ann.carriers.values[j];
                r[x] = ann.probability[j] / ann.background[q];
                if (!touched.get(x)) {
                    touched.set(x);
                    list.add(x);
                }
            }
        }
    }

    /** The ontology part of {@code L(x)} ({@code sum_i ln(eps + (1 - eps) R_i(x))}) for every entity: work
     *  proportional to the annotations the evidence touches. */
    static double[] totals(Annotations ann, int[] items, Params p) {
        double unmatched = Math.log(p.eps());
        double[] total = new double[ann.n];
        Arrays.fill(total, items.length * unmatched);
        double[] r = new double[ann.n];
        BitSet touched = new BitSet(ann.n);
        Ints list = new Ints();
        for (int q : items) {
            ratios(ann, q, p.kappa(), r, touched, list);
            for (int j = 0; j < list.size; j++) {
                int x = list.a[j];
                if (r[x] > 0) {
                    total[x] += itemLogLikelihood(r[x], p) - unmatched;
                }
                r[x] = 0;
                touched.clear(x);
            }
            list.size = 0;
        }
        return total;
    }

    /** What item {@code q} says about candidate {@code x}: its likelihood ratio, kind and the matching term. */
    record Match(double value, int kind, int via) {}

    /** What item {@code q} says about candidate {@code x}: ratio, kind and the matching term (-1: none). */
    static Match match(Annotations ann, int q, int x, double kappa) {
        double value = 0;
        int via = -1;
        if (ann.ic[q] > 0) {
            for (int a : ann.byInformation(q)) {
                if (a != q && ann.ic[a] > 0 && ann.carriers.contains(a, x)) {
                    value = kappa * ann.ic[a] / ann.ic[q];
                    via = a;
                }
            }
        }
        int at = Arrays.binarySearch(ann.carriers.values, ann.carriers.from(q), ann.carriers.to(q), x);
        if (ann.background[q] > 0 && at >= ann.carriers.from(q) && at < ann.carriers.to(q)) {
            value = ann.probability[at] / ann.background[q];
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

    /** {@code ln(eps + (1 - eps) R)}: one item's ontology log-likelihood. */
    static double itemLogLikelihood(double ratio, Params p) {
        return Math.log(p.eps() + (1.0 - p.eps()) * ratio);
    }
}
