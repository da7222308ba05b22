package org.kgemb.neo4j.procedures;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import org.neo4j.graphdb.Direction;
import org.neo4j.graphdb.Label;
import org.neo4j.graphdb.Node;
import org.neo4j.graphdb.Relationship;
import org.neo4j.graphdb.RelationshipType;
import org.neo4j.graphdb.ResourceIterator;
import org.neo4j.graphdb.Transaction;

/**
 * One pushed kgemb model held in memory: every entity's vector in one float array (row i = the i-th entity node
 * found), the relation rows (2R when the model is reciprocal: row r+R is the inverse of r), per-relation Platt
 * calibration and type constraints. Loaded once from the database; {@link ModelCache} reloads it when a push
 * changes the model node's {@code updated_at}.
 */
final class LoadedModel {
    static final String MODEL_LABEL = "KgembModel";
    static final String RELATION_LABEL = "KgembRelation";

    final String name;
    final String version;
    final Scoring.Interaction interaction;
    final int p;
    final int dim;
    final boolean reciprocal;
    final int numRelations;
    final int relationDim;
    final float[] relations;
    final String[] relationKeys;
    final String[] relationTypes;
    final String[] relationLabels;
    final double[] calA;
    final double[] calB;
    final String[][] headTypes;
    final String[][] tailTypes;
    final String[] typeLabels;
    final boolean[] hierarchyRelation;
    /** Relations without self-loops in training: their queries never answer their anchor (Python's irreflexive). */
    final boolean[] irreflexive;
    /** The evidence formula's constants and the model's weight in it; null when the push predates them. */
    final Evidence.Params evidence;
    final int n;
    final long[] nodeIds;
    /** The graph's entity id of each row (what Python breaks ties by); the row index when the push wrote none. */
    final int[] order;
    final Table table;
    final int[][] entityTypes;
    /** The model's rule channel (rules, weights and the graph they ground on); null when pushed without one. */
    final RuleChannel rules;
    private final LongIntMap index;
    private final Map<String, BitSet> blocked = new ConcurrentHashMap<>();
    private final Map<String, Evidence.Annotations> annotations = new ConcurrentHashMap<>();
    private volatile Evidence.Hierarchy hierarchy;

    private LoadedModel(Transaction tx, Node m, String name, String version) {
        this.name = name;
        this.version = version;
        this.interaction = Scoring.Interaction.of(str(m, "interaction"));
        this.p = ((Number) m.getProperty("transe_p", 1L)).intValue();
        this.dim = ((Number) m.getProperty("dim")).intValue();
        this.reciprocal = Boolean.TRUE.equals(m.getProperty("reciprocal", false));
        this.relationDim = ((Number) m.getProperty("relation_dim")).intValue();
        Object rv = m.getProperty("relation_vectors", null);
        if (rv == null) {
            throw new IllegalArgumentException("model '" + name + "' was pushed by an older kgemb without the"
                    + " relation rows the procedures need: push it again with `kgemb neo4j push`");
        }
        this.relations = floats(rv);
        List<Node> rels = new ArrayList<>();
        for (Relationship hr : m.getRelationships(Direction.OUTGOING, RelationshipType.withName("HAS_RELATION"))) {
            rels.add(hr.getEndNode());
        }
        rels.sort((a, b) -> Long.compare(((Number) a.getProperty("id")).longValue(),
                ((Number) b.getProperty("id")).longValue()));
        this.numRelations = rels.size();
        int rows = relations.length / Math.max(1, relationDim);
        if (rows != (reciprocal ? 2 : 1) * numRelations) {
            throw new IllegalArgumentException("model '" + name + "' has " + rows + " relation rows for "
                    + numRelations + " relations" + (reciprocal ? " (reciprocal)" : "") + ": push it again");
        }
        relationKeys = new String[numRelations];
        relationTypes = new String[numRelations];
        relationLabels = new String[numRelations];
        calA = new double[numRelations];
        calB = new double[numRelations];
        headTypes = new String[numRelations][];
        tailTypes = new String[numRelations][];
        hierarchyRelation = new boolean[numRelations];
        irreflexive = new boolean[numRelations];
        for (int r = 0; r < numRelations; r++) {
            Node rel = rels.get(r);
            relationKeys[r] = str(rel, "key");
            relationTypes[r] = (String) rel.getProperty("type", relationKeys[r]);
            relationLabels[r] = (String) rel.getProperty("label", relationKeys[r]);
            double[] cal = doubles(rel.getProperty("calibration", new double[] {1.0, 0.0}));
            calA[r] = cal[0];
            calB[r] = cal[1];
            headTypes[r] = (String[]) rel.getProperty("head_types", new String[0]);
            tailTypes[r] = (String[]) rel.getProperty("tail_types", new String[0]);
            hierarchyRelation[r] = Boolean.TRUE.equals(rel.getProperty("hierarchy", false));
            irreflexive[r] = Boolean.TRUE.equals(rel.getProperty("irreflexive", false));
        }
        Object weight = m.getProperty("evidence_weight", null);
        Object params = m.getProperty("evidence_params", null);
        double[] e = params == null ? new double[0] : doubles(params);
        if (weight instanceof Number w && e.length == 4) { // [eps, rho, gamma, kappa]
            evidence = new Evidence.Params(e[0], e[1], e[2], e[3], w.doubleValue());
        } else {
            evidence = null;
        }
        String idProperty = (String) m.getProperty("id_property", null);
        typeLabels = (String[]) m.getProperty("type_labels", new String[0]);
        Map<String, Integer> typeIndex = new HashMap<>();
        for (int i = 0; i < typeLabels.length; i++) {
            typeIndex.put(typeLabels[i], i);
        }
        String label = str(m, "entity_label");
        String prop = str(m, "vector_property");
        int capacity = ((Number) m.getProperty("num_entities", 1024L)).intValue();
        long[] ids = new long[Math.max(16, capacity)];
        int[] ord = new int[ids.length];
        Table tab = new Table(ids.length, dim);
        float[] scratch = new float[dim];
        int[][] types = new int[ids.length][];
        index = new LongIntMap(ids.length);
        int count = 0;
        try (ResourceIterator<Node> nodes = tx.findNodes(Label.label(label))) {
            while (nodes.hasNext()) {
                Node node = nodes.next();
                Object v = node.getProperty(prop, null);
                if (v == null) {
                    continue;
                }
                if (count == ids.length) {
                    ids = Arrays.copyOf(ids, count * 2);
                    ord = Arrays.copyOf(ord, count * 2);
                    types = Arrays.copyOf(types, count * 2);
                }
                tab.append(vector(v, scratch, dim, node), 0);
                ids[count] = node.getId();
                Object id = idProperty == null ? null : node.getProperty(idProperty, null);
                ord[count] = id instanceof Number x ? x.intValue() : count;
                int[] t = new int[4];
                int nt = 0;
                for (Label l : node.getLabels()) {
                    Integer ti = typeIndex.get(l.name());
                    if (ti != null) {
                        if (nt == t.length) {
                            t = Arrays.copyOf(t, nt * 2);
                        }
                        t[nt++] = ti;
                    }
                }
                types[count] = Arrays.copyOf(t, nt);
                index.put(node.getId(), count);
                count++;
            }
        }
        if (count == 0) {
            throw new IllegalArgumentException("model '" + name + "' has no :" + label + " node with a " + prop
                    + " vector in this database: push it with `kgemb neo4j push`");
        }
        this.n = count;
        this.nodeIds = Arrays.copyOf(ids, count);
        this.order = Arrays.copyOf(ord, count);
        this.table = tab;
        this.entityTypes = Arrays.copyOf(types, count);
        this.rules = RuleChannel.read(m, name, order, count);
    }

    static LoadedModel load(Transaction tx, Node m, String name, String version) {
        return new LoadedModel(tx, m, name, version);
    }

    /** The entity index of a node, or -1 when it has no vector in this model. */
    int indexOf(Node node) {
        return index.get(node.getId());
    }

    /** A relation id from its key, its relationship type or its label (in that order). */
    int relation(String ref) {
        if (ref == null || ref.isBlank()) {
            throw new IllegalArgumentException("relType is empty: give a relationship type of model '" + name
                    + "', one of " + Arrays.toString(relationTypes));
        }
        for (String[] names : new String[][] {relationKeys, relationTypes, relationLabels}) {
            for (int r = 0; r < numRelations; r++) {
                if (ref.equals(names[r])) {
                    return r;
                }
            }
        }
        for (int r = 0; r < numRelations; r++) {
            if (ref.equalsIgnoreCase(relationTypes[r]) || ref.equalsIgnoreCase(relationLabels[r])) {
                return r;
            }
        }
        throw new IllegalArgumentException("unknown relType '" + ref + "' for model '" + name
                + "': give one of " + Arrays.toString(relationTypes));
    }

    /** Entities that may not fill {@code side} of relation r (wrong type); null when every entity may. */
    BitSet blocked(int r, boolean tailSide) {
        String[] allowed = tailSide ? tailTypes[r] : headTypes[r];
        if (allowed.length == 0) {
            return null;
        }
        return blocked.computeIfAbsent(r + (tailSide ? "t" : "h"), key -> {
            BitSet want = new BitSet();
            for (String a : allowed) {
                for (int i = 0; i < typeLabels.length; i++) {
                    if (typeLabels[i].equals(a)) {
                        want.set(i);
                    }
                }
            }
            BitSet out = new BitSet(n);
            for (int e = 0; e < n; e++) {
                int[] t = entityTypes[e];
                boolean ok = t.length == 0;
                for (int x : t) {
                    ok |= want.get(x);
                }
                if (!ok) {
                    out.set(e);
                }
            }
            return out;
        });
    }

    /** Row {@code e}'s vector (a copy). */
    float[] row(int e) {
        return table.row(e);
    }

    /** The annotations of relation r for candidates on the tail side ({@code tailSide}) or the head side, read
     *  once from the relationships in the database (the graph the push wrote) and kept. */
    Evidence.Annotations annotations(Transaction tx, int r, boolean tailSide) {
        return annotations.computeIfAbsent(r + (tailSide ? "t" : "h"), key -> {
            int[][] links = links(tx, r);
            int[] holders = tailSide ? links[1] : links[0];
            int[] terms = tailSide ? links[0] : links[1];
            return new Evidence.Annotations(holders, terms, links[2][0], n, hierarchy(tx), evidence.rho(),
                    evidence.gamma());
        });
    }

    private Evidence.Hierarchy hierarchy(Transaction tx) {
        Evidence.Hierarchy h = hierarchy;
        if (h == null) {
            synchronized (this) {
                if (hierarchy == null) {
                    long[] edges = new long[16];
                    int count = 0;
                    for (int r = 0; r < numRelations; r++) {
                        if (!hierarchyRelation[r]) {
                            continue;
                        }
                        int[][] links = links(tx, r);
                        for (int i = 0; i < links[2][0]; i++) {
                            if (links[0][i] == links[1][i]) {
                                continue;
                            }
                            if (count == edges.length) {
                                edges = Arrays.copyOf(edges, count * 2);
                            }
                            edges[count++] = Evidence.pair(links[0][i], links[1][i]);
                        }
                    }
                    hierarchy = new Evidence.Hierarchy(edges, count, n, order);
                }
                h = hierarchy;
            }
        }
        return h;
    }

    /** The (start, end) rows of every relationship of relation r between this model's entities, and the count. */
    private int[][] links(Transaction tx, int r) {
        int[] starts = new int[16];
        int[] ends = new int[16];
        int count = 0;
        try (ResourceIterator<Relationship> rels = tx.findRelationships(RelationshipType.withName(relationTypes[r]))) {
            while (rels.hasNext()) {
                Relationship rel = rels.next();
                int s = index.get(rel.getStartNodeId());
                int e = index.get(rel.getEndNodeId());
                if (s < 0 || e < 0) {
                    continue;
                }
                if (count == starts.length) {
                    starts = Arrays.copyOf(starts, count * 2);
                    ends = Arrays.copyOf(ends, count * 2);
                }
                starts[count] = s;
                ends[count++] = e;
            }
        }
        return new int[][] {starts, ends, {count}};
    }

    double probability(int r, double score) {
        return 1.0 / (1.0 + Math.exp(-(calA[r] * score + calB[r])));
    }

    private static String str(Node node, String key) {
        Object v = node.getProperty(key, null);
        if (v == null) {
            throw new IllegalArgumentException("the kgemb node has no '" + key + "' property: push the model again");
        }
        return v.toString();
    }

    private static float[] vector(Object v, float[] scratch, int dim, Node node) {
        if (v instanceof float[] f && f.length == dim) {
            return f;
        } else if (v instanceof double[] d && d.length == dim) {
            for (int i = 0; i < dim; i++) {
                scratch[i] = (float) d[i];
            }
            return scratch;
        } else {
            throw new IllegalArgumentException("node " + node.getElementId() + " has a vector that is not " + dim
                    + " numbers: push the model again");
        }
    }

    static float[] floats(Object v) {
        if (v instanceof float[] f) {
            return f;
        }
        double[] d = doubles(v);
        float[] out = new float[d.length];
        for (int i = 0; i < d.length; i++) {
            out[i] = (float) d[i];
        }
        return out;
    }

    static double[] doubles(Object v) {
        if (v instanceof double[] d) {
            return d;
        }
        if (v instanceof float[] f) {
            double[] out = new double[f.length];
            for (int i = 0; i < f.length; i++) {
                out[i] = f[i];
            }
            return out;
        }
        if (v instanceof long[] l) {
            double[] out = new double[l.length];
            for (int i = 0; i < l.length; i++) {
                out[i] = l[i];
            }
            return out;
        }
        throw new IllegalArgumentException("expected a list of numbers, got " + v);
    }

    /** An open-addressing long -> int map (node id -> entity index), -1 for absent. */
    static final class LongIntMap {
        private long[] keys;
        private int[] values;
        private int size;

        LongIntMap(int expected) {
            int cap = Integer.highestOneBit(Math.max(16, expected * 2)) * 2;
            keys = new long[cap];
            values = new int[cap];
            Arrays.fill(values, -1);
        }

        void put(long key, int value) {
            if ((size + 1) * 2 > keys.length) {
                grow();
            }
            int mask = keys.length - 1;
            int i = (int) (mix(key) & mask);
            while (values[i] != -1 && keys[i] != key) {
                i = (i + 1) & mask;
            }
            if (values[i] == -1) {
                size++;
            }
            keys[i] = key;
            values[i] = value;
        }

        int get(long key) {
            int mask = keys.length - 1;
            int i = (int) (mix(key) & mask);
            while (values[i] != -1) {
                if (keys[i] == key) {
                    return values[i];
                }
                i = (i + 1) & mask;
            }
            return -1;
        }

        private void grow() {
            long[] k = keys;
            int[] v = values;
            keys = new long[k.length * 2];
            values = new int[k.length * 2];
            Arrays.fill(values, -1);
            size = 0;
            for (int i = 0; i < k.length; i++) {
                if (v[i] != -1) {
                    put(k[i], v[i]);
                }
            }
        }

        private static long mix(long x) {
            x ^= x >>> 33;
            x *= 0xff51afd7ed558ccdL;
            x ^= x >>> 33;
            return x;
        }
    }
}
