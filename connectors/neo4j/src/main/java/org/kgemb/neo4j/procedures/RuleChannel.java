package org.kgemb.neo4j.procedures;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.neo4j.graphdb.Node;

/**
 * A pushed model's rule channel: the port of Python's {@code kgemb.rules.RuleSet.tail_scores} times
 * {@code kgemb.channels.RuleChannel}'s per-relation weight, so that {@code kgemb.predict.tails/heads} rank as
 * {@code LinkPredictor} does. The push stores the mined rules, their confidences, the weights and the training
 * triples the rules ground on (the same graph as Python's, not the database's relationships, which also hold the
 * validation and test links) on the model node.
 *
 * <p>Relations are oriented as in the rule set: {@code 0..R-1} forward, {@code r + R} the inverse of {@code r}, so a
 * head query {@code (?, r, t)} is the tail query {@code (t, r + R, ?)}. Rule kinds, as in {@code kgemb.rules}:
 * {@code path1 h(X,Y) <= b(X,Y)}, {@code path2 h(X,Y) <= b(X,Z), u(Z,Y)}, {@code path3 h(X,Y) <= b(X,A), u(A,B),
 * v(B,Y)} (a walk with {@code A != Y} and {@code B != X}), {@code const h(X,c) <= b(X,d)}, {@code any h(X,c) <=
 * b(X,Z)}; never {@code Y = X}. A rule fires once per candidate; a candidate's score aggregates the confidences of
 * the rules that fire for it ({@code maxplus}: the best, ties broken by the next two; {@code max}; {@code noisy-or}).
 */
final class RuleChannel {
    static final int PATH1 = 0;
    static final int PATH2 = 1;
    static final int PATH3 = 2;
    static final int CONST = 3;
    static final int ANY = 4;
    private static final int COLUMNS = 7; // head, kind, b, u, v, d, c
    private static final double TIE = 1e-3;
    private static final double SCALE = 1 << 24; // maxplus / max: confidences kept to 2^-24, as Python packs them

    private final int n;
    private final int r2;
    private final float[] weights;
    private final String aggregate;
    /** The reciprocal training graph over rows: the edges of row x at start[x]..start[x+1], sorted by (relation,
     *  target), no duplicates. */
    private final int[] start;
    private final int[] edgeRel;
    private final int[] edgeTarget;
    /** Per head relation: its path rules (b, u, v, confidence), its constant rules by (b, d) and by b. */
    private final List<double[]>[] paths;
    private final List<Map<Long, List<double[]>>> consts;
    private final List<Map<Integer, List<double[]>>> anys;

    @SuppressWarnings("unchecked")
    private RuleChannel(int n, int numRelations, float[] weights, String aggregate, long[] table, double[] confidence,
            long[] triples, int[] rowOf) {
        this.n = n;
        this.r2 = 2 * numRelations;
        this.weights = weights;
        this.aggregate = aggregate;
        // the reciprocal graph: (h, r, t) and (t, r + R, h), as rows
        int m = triples.length / 3;
        long[] keys = new long[2 * m];
        int count = 0;
        for (int i = 0; i < m; i++) {
            int h = row(rowOf, triples[3 * i]);
            int r = (int) triples[3 * i + 1];
            int t = row(rowOf, triples[3 * i + 2]);
            if (h < 0 || t < 0) {
                continue; // an entity without a node in this database: its edges ground nothing here
            }
            keys[count++] = ((long) h * r2 + r) * n + t;
            keys[count++] = ((long) t * r2 + r + numRelations) * n + h;
        }
        keys = Arrays.copyOf(keys, count);
        Arrays.sort(keys);
        start = new int[n + 1];
        int[] rel = new int[count];
        int[] target = new int[count];
        int edges = 0;
        for (int i = 0; i < count; i++) {
            if (i > 0 && keys[i] == keys[i - 1]) {
                continue;
            }
            long xr = keys[i] / n;
            int x = (int) (xr / r2);
            rel[edges] = (int) (xr % r2);
            target[edges] = (int) (keys[i] % n);
            start[x + 1]++;
            edges++;
        }
        for (int x = 0; x < n; x++) {
            start[x + 1] += start[x];
        }
        edgeRel = Arrays.copyOf(rel, edges);
        edgeTarget = Arrays.copyOf(target, edges);
        paths = new List[r2];
        consts = new ArrayList<>();
        anys = new ArrayList<>();
        for (int h = 0; h < r2; h++) {
            paths[h] = new ArrayList<>();
            consts.add(new HashMap<>());
            anys.add(new HashMap<>());
        }
        for (int i = 0; i < confidence.length; i++) {
            double conf = confidence[i];
            int head = (int) table[COLUMNS * i];
            int kind = (int) table[COLUMNS * i + 1];
            int b = (int) table[COLUMNS * i + 2];
            if (!(conf > 0) || head < 0 || head >= r2) {
                continue; // a rule of confidence 0 never fires
            }
            switch (kind) {
                case PATH1, PATH2, PATH3 -> paths[head].add(new double[] {kind, b, table[COLUMNS * i + 3],
                        table[COLUMNS * i + 4], conf});
                case CONST -> {
                    int d = row(rowOf, table[COLUMNS * i + 5]);
                    int c = row(rowOf, table[COLUMNS * i + 6]);
                    if (d >= 0 && c >= 0) {
                        consts.get(head).computeIfAbsent((long) b * n + d, k -> new ArrayList<>())
                                .add(new double[] {c, conf});
                    }
                }
                case ANY -> {
                    int c = row(rowOf, table[COLUMNS * i + 6]);
                    if (c >= 0) {
                        anys.get(head).computeIfAbsent(b, k -> new ArrayList<>()).add(new double[] {c, conf});
                    }
                }
                default -> throw new IllegalArgumentException("rule " + i + " has an unknown kind " + kind
                        + ": push the model again with this kgemb");
            }
        }
    }

    /** The model node's rule channel, or null when it was pushed without one; {@code order[row]} is each row's
     *  entity id (the ids the rules and triples use). */
    static RuleChannel read(Node model, String name, int[] order, int n) {
        Object w = model.getProperty("rule_weights", null);
        if (w == null) {
            return null;
        }
        try {
            int numRelations = ((Number) model.getProperty("rule_relations")).intValue();
            float[] weights = LoadedModel.floats(w);
            long[] table = longs(model.getProperty("rule_table"));
            Object conf = model.getProperty("rule_confidence");
            double[] confidence = isEmpty(conf) ? new double[0] : LoadedModel.doubles(conf);
            long[] triples = longs(model.getProperty("rule_triples"));
            String aggregate = (String) model.getProperty("rule_aggregate");
            if (weights.length != 2 * numRelations || table.length != COLUMNS * confidence.length
                    || triples.length % 3 != 0
                    || !(aggregate.equals("maxplus") || aggregate.equals("max") || aggregate.equals("noisy-or"))) {
                throw new IllegalArgumentException("the arrays do not agree");
            }
            int maxId = -1;
            for (int id : order) {
                maxId = Math.max(maxId, id);
            }
            int[] rowOf = new int[maxId + 1];
            Arrays.fill(rowOf, -1);
            for (int row = 0; row < n; row++) {
                rowOf[order[row]] = row;
            }
            return new RuleChannel(n, numRelations, weights, aggregate, table, confidence, triples, rowOf);
        } catch (ClassCastException | NullPointerException | IllegalArgumentException e) {
            throw new IllegalArgumentException("model '" + name + "' has a rule channel that cannot be read ("
                    + e.getMessage() + "): push it again with `kgemb neo4j push`");
        }
    }

    /** A list of integers as Neo4j stores it (an empty list has no element type: any empty array). */
    private static long[] longs(Object v) {
        if (v instanceof long[] l) {
            return l;
        }
        if (isEmpty(v)) {
            return new long[0];
        }
        throw new IllegalArgumentException("expected a list of integers, got " + v);
    }

    private static boolean isEmpty(Object v) {
        return v != null && v.getClass().isArray() && java.lang.reflect.Array.getLength(v) == 0;
    }

    /** Whether relation {@code h} (oriented) has a weight above 0. */
    boolean active(int h) {
        return weights[h] > 0;
    }

    /**
     * The weighted rule scores {@code w[h] * rule(x, h, y)} of the query {@code (x, h, ?)} for every row {@code y}
     * a rule fires for (float32 arithmetic, as Python's); empty when the relation's weight is 0.
     */
    Map<Integer, Float> scores(int x, int h) {
        Map<Integer, Float> out = new HashMap<>();
        if (!active(h)) {
            return out;
        }
        Map<Integer, List<Double>> fired = new HashMap<>();
        for (double[] rule : paths[h]) {
            int kind = (int) rule[0];
            Set<Integer> ys = new HashSet<>();
            int b = (int) rule[1];
            int u = (int) rule[2];
            int v = (int) rule[3];
            for (int e = first(x, b), end = last(x, b); e < end; e++) {
                int z1 = edgeTarget[e];
                if (kind == PATH1) {
                    ys.add(z1);
                    continue;
                }
                for (int f = first(z1, u), fEnd = last(z1, u); f < fEnd; f++) {
                    int z2 = edgeTarget[f];
                    if (kind == PATH2) {
                        ys.add(z2);
                        continue;
                    }
                    if (z2 == x) {
                        continue; // path3: B != X
                    }
                    for (int g = first(z2, v), gEnd = last(z2, v); g < gEnd; g++) {
                        int y = edgeTarget[g];
                        if (y != z1) { // path3: A != Y
                            ys.add(y);
                        }
                    }
                }
            }
            for (int y : ys) {
                fire(fired, x, y, rule[4]);
            }
        }
        Map<Long, List<double[]>> byBody = consts.get(h);
        Map<Integer, List<double[]>> byRelation = anys.get(h);
        int previous = -1;
        for (int e = start[x]; e < start[x + 1]; e++) {
            List<double[]> rules = byBody.isEmpty() ? null : byBody.get((long) edgeRel[e] * n + edgeTarget[e]);
            if (rules != null) {
                for (double[] rule : rules) {
                    fire(fired, x, (int) rule[0], rule[1]);
                }
            }
            if (edgeRel[e] != previous) { // each body relation of x once
                previous = edgeRel[e];
                List<double[]> any = byRelation.get(previous);
                if (any != null) {
                    for (double[] rule : any) {
                        fire(fired, x, (int) rule[0], rule[1]);
                    }
                }
            }
        }
        float weight = weights[h];
        for (Map.Entry<Integer, List<Double>> entry : fired.entrySet()) {
            float value = (float) aggregate(entry.getValue()) * weight;
            if (value > 0) {
                out.put(entry.getKey(), value);
            }
        }
        return out;
    }

    private static void fire(Map<Integer, List<Double>> fired, int x, int y, double conf) {
        if (y != x) { // distinct variables: a rule never predicts the anchor itself
            fired.computeIfAbsent(y, k -> new ArrayList<>()).add(conf);
        }
    }

    private double aggregate(List<Double> confs) {
        if (aggregate.equals("noisy-or")) {
            double log = 0;
            for (double c : confs) {
                log += Math.log1p(-Math.min(c, 1 - 1e-9));
            }
            return -Math.expm1(log);
        }
        double[] c = new double[confs.size()];
        for (int i = 0; i < c.length; i++) {
            c[i] = Math.rint(Math.min(Math.max(confs.get(i), 0.0), 1.0) * SCALE) / SCALE;
        }
        Arrays.sort(c);
        double out = c[c.length - 1];
        if (aggregate.equals("max")) {
            return out;
        }
        if (c.length > 1) {
            out += c[c.length - 2] * TIE;
        }
        if (c.length > 2) {
            out += c[c.length - 3] * (TIE * TIE);
        }
        return out;
    }

    /** The first edge of row x with relation rel (edges are sorted by relation within a row). */
    private int first(int x, int rel) {
        int lo = start[x];
        int hi = start[x + 1];
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (edgeRel[mid] < rel) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    /** One past the last edge of row x with relation rel. */
    private int last(int x, int rel) {
        return first(x, rel + 1);
    }

    private static int row(int[] rowOf, long id) {
        return id >= 0 && id < rowOf.length ? rowOf[(int) id] : -1;
    }
}
