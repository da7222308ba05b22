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
 *
 * <p>With a text-neighbour vote ({@code kgemb.channels.TextVotes}), a candidate {@code y} of the query {@code (x, h, ?)}
 * also scores {@code x[h]} times the strengths of its text neighbours that are training answers of the query: the rule
 * {@code h(X,Y) <= h(X,Z), near(Z,Y)}, summed in float32 as Python's sparse product sums it.
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
    private final int numRelations;
    private final int r2;
    private final float[] weights;
    private final String aggregate;
    /** The reciprocal training graph over rows: the edges of row x at start[x]..start[x+1], sorted by (relation,
     *  target), no duplicates. */
    private final int[] start;
    private final int[] edgeRel;
    private final int[] edgeTarget;
    /** The rule table as pushed (strongest first; constants as rows, -1 for none or an entity without a node). */
    private final int[] head;
    private final int[] kind;
    private final int[] b;
    private final int[] u;
    private final int[] v;
    private final int[] d;
    private final int[] c;
    private final double[] confidence;
    private final long[] support;
    private final long[] bodySupport;
    /** Per head relation: its path rules (b, u, v, confidence), its constant rules by (b, d) and by b. */
    private final List<double[]>[] paths;
    private final List<Map<Long, List<double[]>>> consts;
    private final List<Map<Integer, List<double[]>>> anys;
    /** The text-neighbour vote: its weights per oriented relation (null without a vote) and, per row {@code z}, the
     *  rows that have {@code z} among their neighbours with its strengths. */
    private final float[] voteWeights;
    private final int[][] voters;
    private final float[][] voterStrength;

    @SuppressWarnings("unchecked")
    private RuleChannel(int n, int numRelations, float[] weights, String aggregate, long[] table, double[] confidence,
            long[] support, long[] bodySupport, long[] triples, int[] rowOf, float[] voteWeights, int voteK,
            long[] voteNear, float[] voteStrength) {
        this.n = n;
        this.numRelations = numRelations;
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
            if (r < 0 || r >= numRelations) {
                throw new IllegalArgumentException("training triple " + i + " has relation " + r);
            }
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
        int rules = confidence.length;
        this.confidence = confidence;
        this.support = support;
        this.bodySupport = bodySupport;
        head = new int[rules];
        kind = new int[rules];
        b = new int[rules];
        u = new int[rules];
        v = new int[rules];
        d = new int[rules];
        c = new int[rules];
        for (int i = 0; i < rules; i++) {
            head[i] = (int) table[COLUMNS * i];
            kind[i] = (int) table[COLUMNS * i + 1];
            b[i] = (int) table[COLUMNS * i + 2];
            u[i] = (int) table[COLUMNS * i + 3];
            v[i] = (int) table[COLUMNS * i + 4];
            d[i] = row(rowOf, table[COLUMNS * i + 5]);
            c[i] = row(rowOf, table[COLUMNS * i + 6]);
            if (head[i] < 0 || head[i] >= r2 || kind[i] < PATH1 || kind[i] > ANY) {
                throw new IllegalArgumentException("rule " + i + " has head " + head[i] + " and kind " + kind[i]);
            }
            double conf = confidence[i];
            if (!(conf > 0)) {
                continue; // a rule of confidence 0 never fires
            }
            int h = head[i];
            switch (kind[i]) {
                case CONST -> {
                    if (d[i] >= 0 && c[i] >= 0) {
                        consts.get(h).computeIfAbsent((long) b[i] * n + d[i], k -> new ArrayList<>())
                                .add(new double[] {c[i], conf});
                    }
                }
                case ANY -> {
                    if (c[i] >= 0) {
                        anys.get(h).computeIfAbsent(b[i], k -> new ArrayList<>()).add(new double[] {c[i], conf});
                    }
                }
                default -> paths[h].add(new double[] {kind[i], b[i], u[i], v[i], conf});
            }
        }
        this.voteWeights = voteWeights;
        voters = new int[n][];
        voterStrength = new float[n][];
        if (voteWeights != null) {
            invertVotes(rowOf, voteK, voteNear, voteStrength);
        }
    }

    /** {@link #voters} from each entity id's {@code k} neighbours ({@code near}, entity ids) and their strengths;
     *  entities without a node in this database vote for nothing and get no vote. */
    private void invertVotes(int[] rowOf, int k, long[] near, float[] strength) {
        int[] count = new int[n];
        for (int i = 0; i < near.length; i++) {
            int z = row(rowOf, near[i]);
            if (z >= 0 && row(rowOf, i / k) >= 0) {
                count[z]++;
            }
        }
        for (int z = 0; z < n; z++) {
            voters[z] = new int[count[z]];
            voterStrength[z] = new float[count[z]];
            count[z] = 0;
        }
        for (int i = 0; i < near.length; i++) { // in entity id order, as Python's product sums them
            int z = row(rowOf, near[i]);
            int y = row(rowOf, i / k);
            if (z >= 0 && y >= 0) {
                voters[z][count[z]] = y;
                voterStrength[z][count[z]++] = strength[i];
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
            long[] support = longs(model.getProperty("rule_support"));
            long[] bodySupport = longs(model.getProperty("rule_body_support"));
            long[] triples = longs(model.getProperty("rule_triples"));
            String aggregate = (String) model.getProperty("rule_aggregate");
            if (weights.length != 2 * numRelations || table.length != COLUMNS * confidence.length
                    || support.length != confidence.length || bodySupport.length != confidence.length
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
            Object vw = model.getProperty("rule_vote_weights", null);
            float[] voteWeights = vw == null ? null : LoadedModel.floats(vw);
            int voteK = vw == null ? 0 : ((Number) model.getProperty("rule_vote_k")).intValue();
            long[] voteNear = vw == null ? new long[0] : longs(model.getProperty("rule_vote_near"));
            float[] voteStrength = vw == null ? new float[0] : LoadedModel.floats(model.getProperty("rule_vote_strength"));
            if (voteWeights != null && (voteWeights.length != 2 * numRelations || voteK <= 0
                    || voteNear.length % voteK != 0 || voteStrength.length != voteNear.length)) {
                throw new IllegalArgumentException("the text-neighbour vote's arrays do not agree");
            }
            return new RuleChannel(n, numRelations, weights, aggregate, table, confidence, support, bodySupport,
                    triples, rowOf, voteWeights, voteK, voteNear, voteStrength);
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

    /** Whether relation {@code h} (oriented) has a rule weight above 0. */
    boolean active(int h) {
        return weights[h] > 0;
    }

    /**
     * The weighted scores {@code w[h] * rule(x, h, y) + x[h] * vote(x, h, y)} of the query {@code (x, h, ?)} for
     * every row {@code y} a rule fires for or a vote reaches (float32 arithmetic, as Python's); empty when both
     * weights of the relation are 0.
     */
    Map<Integer, Float> scores(int x, int h) {
        Map<Integer, Float> out = ruleScores(x, h);
        if (voteWeights == null || !(voteWeights[h] > 0)) {
            return out;
        }
        Map<Integer, Float> votes = new HashMap<>();
        for (int e = first(x, h), end = last(x, h); e < end; e++) {
            int z = edgeTarget[e];
            for (int i = 0; i < voters[z].length; i++) {
                votes.merge(voters[z][i], voterStrength[z][i], Float::sum);
            }
        }
        float weight = voteWeights[h];
        for (Map.Entry<Integer, Float> entry : votes.entrySet()) {
            out.merge(entry.getKey(), entry.getValue() * weight, Float::sum);
        }
        return out;
    }

    /** One term of the text-neighbour vote for a candidate: a training answer of the query that the candidate has
     *  among its text neighbours, with its strength. */
    record Vote(int answer, float strength) {}

    /** The vote's weight of the oriented relation {@code h} (0 without a vote). */
    float voteWeight(int h) {
        return voteWeights == null ? 0f : voteWeights[h];
    }

    /**
     * The vote's terms for the candidate row {@code y} of the query {@code (x, h, ?)} ({@code h} oriented), strongest
     * first, as Python's {@code TextVotes.voters} lists them; none where the relation's vote weight is 0.
     */
    List<Vote> votes(int x, int h, int y) {
        List<Vote> out = new ArrayList<>();
        if (!(voteWeight(h) > 0)) {
            return out;
        }
        for (int e = first(x, h), end = last(x, h); e < end; e++) {
            int z = edgeTarget[e];
            for (int i = 0; i < voters[z].length; i++) {
                if (voters[z][i] == y) {
                    out.add(new Vote(z, voterStrength[z][i]));
                }
            }
        }
        out.sort((a, b) -> Float.compare(b.strength(), a.strength()));
        return out;
    }

    private Map<Integer, Float> ruleScores(int x, int h) {
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

    /** One rule that predicts a link, with one grounding of its body: the rows along it, from the head. */
    record Fired(int rule, String kind, double confidence, long support, long bodySupport, int[] path) {}

    /**
     * The {@code k} strongest rules that predict {@code (h, r, t)} (r forward, 0..R-1), each with one grounding of
     * its body, as Python's {@code RuleSet.explain} finds them: the rules in the pushed order (strongest first), the
     * grounding through the entities of smallest id ({@code order[row]}).
     */
    List<Fired> explain(int h, int r, int t, int k, int[] order) {
        List<Fired> out = new ArrayList<>();
        if (h == t) {
            return out;
        }
        for (int i = 0; i < head.length && out.size() < k; i++) {
            if (head[i] != r) {
                continue;
            }
            int[] path = switch (kind[i]) {
                case PATH1 -> has(h, b[i], t) ? new int[] {h, t} : null;
                case PATH2 -> {
                    int z = smallest(common(targets(h, b[i]), targets(t, inverse(u[i])), h, t, -1), order);
                    yield z < 0 ? null : new int[] {h, z, t};
                }
                case PATH3 -> {
                    int[] ends = targets(t, inverse(v[i]));
                    int[] path3 = null;
                    for (int z1 : byId(targets(h, b[i]), order)) {
                        if (z1 == h || z1 == t) {
                            continue;
                        }
                        int z2 = smallest(common(targets(z1, u[i]), ends, h, t, z1), order);
                        if (z2 >= 0) {
                            path3 = new int[] {h, z1, z2, t};
                            break;
                        }
                    }
                    yield path3;
                }
                case CONST -> c[i] == t && d[i] >= 0 && has(h, b[i], d[i]) ? new int[] {h, d[i]} : null;
                default -> { // ANY
                    int z = c[i] == t ? smallest(targets(h, b[i]), order) : -1;
                    yield z < 0 ? null : new int[] {h, z};
                }
            };
            if (path != null) {
                out.add(new Fired(i, KINDS[kind[i]], confidence[i], support[i], bodySupport[i], path));
            }
        }
        return out;
    }

    static final String[] KINDS = {"path1", "path2", "path3", "const", "any"};

    /** Rule {@code i} as text over forward relation names, as Python's {@code RuleSet.rule_text}; constants by
     *  {@code name}. */
    String text(int i, String[] relationNames, java.util.function.IntFunction<String> name) {
        String x = "X";
        String y = "Y";
        return switch (kind[i]) {
            case PATH1 -> atom(head[i], x, y, relationNames) + " <= " + atom(b[i], x, y, relationNames);
            case PATH2 -> atom(head[i], x, y, relationNames) + " <= " + atom(b[i], x, "Z", relationNames) + ", "
                    + atom(u[i], "Z", y, relationNames);
            case PATH3 -> atom(head[i], x, y, relationNames) + " <= " + atom(b[i], x, "A", relationNames) + ", "
                    + atom(u[i], "A", "B", relationNames) + ", " + atom(v[i], "B", y, relationNames);
            case CONST -> atom(head[i], x, name.apply(c[i]), relationNames) + " <= "
                    + atom(b[i], x, name.apply(d[i]), relationNames);
            default -> atom(head[i], x, name.apply(c[i]), relationNames) + " <= "
                    + atom(b[i], x, "Z", relationNames);
        };
    }

    private String atom(int rel, String a, String z, String[] relationNames) {
        boolean swap = rel >= numRelations;
        String relName = relationNames[swap ? rel - numRelations : rel];
        return swap ? relName + "(" + z + "," + a + ")" : relName + "(" + a + "," + z + ")";
    }

    private int inverse(int rel) {
        return rel < numRelations ? rel + numRelations : rel - numRelations;
    }

    private boolean has(int x, int rel, int y) {
        for (int e = first(x, rel), end = last(x, rel); e < end; e++) {
            if (edgeTarget[e] == y) {
                return true;
            }
        }
        return false;
    }

    /** The rows y of the edges rel(x, y). */
    private int[] targets(int x, int rel) {
        return Arrays.copyOfRange(edgeTarget, first(x, rel), last(x, rel));
    }

    /** The rows in both lists (each sorted), other than the three given. */
    private static int[] common(int[] a, int[] z, int not1, int not2, int not3) {
        int[] out = new int[Math.min(a.length, z.length)];
        int count = 0;
        for (int i = 0, j = 0; i < a.length && j < z.length;) {
            if (a[i] < z[j]) {
                i++;
            } else if (a[i] > z[j]) {
                j++;
            } else {
                if (a[i] != not1 && a[i] != not2 && a[i] != not3) {
                    out[count++] = a[i];
                }
                i++;
                j++;
            }
        }
        return Arrays.copyOf(out, count);
    }

    /** The row of smallest entity id, or -1 for none. */
    private static int smallest(int[] rows, int[] order) {
        int best = -1;
        for (int x : rows) {
            if (best < 0 || order[x] < order[best]) {
                best = x;
            }
        }
        return best;
    }

    private static int[] byId(int[] rows, int[] order) {
        return Arrays.stream(rows).boxed().sorted((p, q) -> Integer.compare(order[p], order[q]))
                .mapToInt(Integer::intValue).toArray();
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
