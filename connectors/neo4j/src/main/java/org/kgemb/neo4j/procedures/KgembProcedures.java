package org.kgemb.neo4j.procedures;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import org.neo4j.graphdb.Direction;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.graphdb.Label;
import org.neo4j.graphdb.Node;
import org.neo4j.graphdb.Relationship;
import org.neo4j.graphdb.RelationshipType;
import org.neo4j.graphdb.ResourceIterator;
import org.neo4j.graphdb.Transaction;
import org.neo4j.procedure.Context;
import org.neo4j.procedure.Description;
import org.neo4j.procedure.Mode;
import org.neo4j.procedure.Name;
import org.neo4j.procedure.Procedure;
import org.neo4j.procedure.UserFunction;

/**
 * kgemb's link prediction inside Neo4j: exact scores of a pushed model over its in-memory vectors, plus its rule
 * channel ({@link RuleChannel}) where the model has one.
 *
 * <p>Config keys (all optional): {@code model} (the pushed model's name, default {@code kgemb}), {@code filterKnown}
 * (leave out links the graph has, default true), {@code constraints} (only candidates of the types the relation
 * takes, default true).
 */
public class KgembProcedures {
    static final int MAX_K = 100_000;

    @Context
    public Transaction tx;

    @Context
    public GraphDatabaseService db;

    /** One ranked answer. */
    public static class Prediction {
        public Node node;
        public double score;
        public double probability;
        public long rank;

        Prediction(Node node, double score, double probability, long rank) {
            this.node = node;
            this.score = score;
            this.probability = probability;
            this.rank = rank;
        }
    }

    /** One answer of a multi-evidence ranking, with what each piece of evidence says about it. */
    public static class Ranked {
        public Node node;
        public double score;
        public double raw;
        public long rank;
        public List<Map<String, Object>> contributions;

        Ranked(Node node, double score, double raw, long rank, List<Map<String, Object>> contributions) {
            this.node = node;
            this.score = score;
            this.raw = raw;
            this.rank = rank;
            this.contributions = contributions;
        }
    }

    /** One similar entity. */
    public static class Similar {
        public Node node;
        public double score;
        public long rank;

        Similar(Node node, double score, long rank) {
            this.node = node;
            this.score = score;
            this.rank = rank;
        }
    }

    /** One mined rule that predicts a link, with one grounding of its body. */
    public static class FiredRule {
        public String rule;
        public String kind;
        public double confidence;
        public long support;
        public long bodySupport;
        public List<Node> path;

        FiredRule(String rule, String kind, double confidence, long support, long bodySupport, List<Node> path) {
            this.rule = rule;
            this.kind = kind;
            this.confidence = confidence;
            this.support = support;
            this.bodySupport = bodySupport;
            this.path = path;
        }
    }

    /** One term of the text-neighbour vote for a link. */
    public static class VoteTerm {
        public Node node;
        public String direction;
        public double strength;
        public double weight;

        VoteTerm(Node node, String direction, double strength, double weight) {
            this.node = node;
            this.direction = direction;
            this.strength = strength;
            this.weight = weight;
        }
    }

    /** One pushed model. */
    public static class ModelInfo {
        public String name;
        public String interaction;
        public long dim;
        public long entities;
        public long relations;
        public boolean reciprocal;
        public boolean complete;
        public long loaded;

        ModelInfo(String name, String interaction, long dim, long entities, long relations, boolean reciprocal,
                boolean complete, long loaded) {
            this.name = name;
            this.interaction = interaction;
            this.dim = dim;
            this.entities = entities;
            this.relations = relations;
            this.reciprocal = reciprocal;
            this.complete = complete;
            this.loaded = loaded;
        }
    }

    @Procedure(name = "kgemb.predict.tails", mode = Mode.READ)
    @Description("kgemb.predict.tails(head, relType, k = 10, config = {}) :: (node, score, probability, rank) -- the k"
            + " most probable new tails of (head)-[:relType]->(?), exact model scores (plus the model's mined rules where"
            + " it has them, as Python's LinkPredictor), calibrated probabilities")
    public Stream<Prediction> tails(@Name("head") Node head, @Name("relType") String relType,
            @Name(value = "k", defaultValue = "10") Long k,
            @Name(value = "config", defaultValue = "{}") Map<String, Object> config) {
        return predict(head, relType, k, config, true);
    }

    @Procedure(name = "kgemb.predict.heads", mode = Mode.READ)
    @Description("kgemb.predict.heads(tail, relType, k = 10, config = {}) :: (node, score, probability, rank) -- the k"
            + " most probable new heads of (?)-[:relType]->(tail)")
    public Stream<Prediction> heads(@Name("tail") Node tail, @Name("relType") String relType,
            @Name(value = "k", defaultValue = "10") Long k,
            @Name(value = "config", defaultValue = "{}") Map<String, Object> config) {
        return predict(tail, relType, k, config, false);
    }

    @Procedure(name = "kgemb.rank", mode = Mode.READ)
    @Description("kgemb.rank(evidence, relType, k = 10, config = {target: 'head'}) :: (node, score, raw, rank,"
            + " contributions) -- the entities that best explain all evidence nodes together: candidates x of"
            + " (x)-[:relType]->(evidence) (target 'tail': (evidence)-[:relType]->(x)), ranked like Python's"
            + " LinkPredictor.rank: the generative log-likelihood of the known links (exact, or through the"
            + " is_a/subClassOf/broader hierarchy) plus the model's calibrated log-probabilities; score = P(x)"
            + " (sums to 1 over all candidates), raw = L(x)")
    public Stream<Ranked> rank(@Name("evidence") List<Node> evidence, @Name("relType") String relType,
            @Name(value = "k", defaultValue = "10") Long k,
            @Name(value = "config", defaultValue = "{}") Map<String, Object> config) {
        Map<String, Object> cfg = config == null ? Map.of() : config;
        int kk = checkK(k);
        LoadedModel m = model(cfg);
        int r = m.relation(relType);
        Object target = cfg.getOrDefault("target", "head");
        if (!"head".equals(target) && !"tail".equals(target)) {
            throw new IllegalArgumentException("config.target must be 'head' or 'tail', not " + target);
        }
        if (m.evidence == null) {
            throw new IllegalArgumentException("model '" + m.name + "' was pushed by an older kgemb without the"
                    + " evidence weight and constants kgemb.rank needs: push it again with `kgemb neo4j push`");
        }
        boolean tailSide = "tail".equals(target); // the side the candidates fill
        if (evidence == null || evidence.isEmpty()) {
            throw new IllegalArgumentException("evidence is empty: give a list of nodes, e.g. [s IN symptoms | s]");
        }
        boolean constraints = constraints(cfg);
        int items = evidence.size();
        int[] anchors = new int[items];
        BitSet evidenceBlocked = constraints ? m.blocked(r, !tailSide) : null;
        for (int i = 0; i < items; i++) {
            anchors[i] = anchor(m, evidence.get(i), "evidence[" + i + "]");
            if (evidenceBlocked != null && evidenceBlocked.get(anchors[i])) {
                throw new IllegalArgumentException("evidence[" + i + "] (node " + evidence.get(i).getElementId()
                        + ") cannot be the " + (tailSide ? "head" : "tail") + " of " + relType + ": its type is not"
                        + " among " + java.util.Arrays.toString(tailSide ? m.headTypes[r] : m.tailTypes[r])
                        + "; give nodes of the right type or pass {constraints: false}");
            }
        }
        BitSet blocked = constraints ? m.blocked(r, tailSide) : null;
        BitSet skip = blocked == null ? new BitSet(m.n) : (BitSet) blocked.clone();
        for (int e : anchors) {
            skip.set(e);
        }
        Evidence.Annotations ann = m.annotations(tx, r, tailSide);
        Ranking.Result found = Ranking.rank(m, ann, r, tailSide, anchors, skip, kk);
        List<Ranked> out = new ArrayList<>();
        for (int j = 0; j < found.ids().length; j++) {
            int x = found.ids()[j];
            List<Map<String, Object>> contributions = new ArrayList<>();
            for (int i = 0; i < items; i++) {
                Evidence.Match match = Evidence.match(ann, anchors[i], x, m.evidence.kappa());
                Map<String, Object> c = new java.util.LinkedHashMap<>();
                c.put("node", evidence.get(i));
                c.put("probability", Math.exp(found.logProbability()[j][i]));
                c.put("known", match.kind() == Evidence.EXACT);
                c.put("match", Evidence.KIND_NAMES[match.kind()]);
                c.put("via", match.via() < 0 ? null : nodeOf(m, match.via()));
                c.put("likelihoodRatio", match.value());
                c.put("logLikelihood", Evidence.itemLogLikelihood(match.value(), m.evidence)
                        + m.evidence.alpha() * found.logProbability()[j][i]);
                contributions.add(c);
            }
            out.add(new Ranked(nodeOf(m, x), found.probability()[j], found.total()[j], j + 1, contributions));
        }
        return out.stream();
    }

    @Procedure(name = "kgemb.explain.rules", mode = Mode.READ)
    @Description("kgemb.explain.rules(head, relType, tail, k = 5, config = {}) :: (rule, kind, confidence, support,"
            + " bodySupport, path) -- the k strongest of the model's mined rules that predict"
            + " (head)-[:relType]->(tail), each with one grounding of its body (the nodes along it, from head), as"
            + " Python's LinkPredictor.explain lists them; none for a model pushed without rules")
    public Stream<FiredRule> explainRules(@Name("head") Node head, @Name("relType") String relType,
            @Name("tail") Node tail, @Name(value = "k", defaultValue = "5") Long k,
            @Name(value = "config", defaultValue = "{}") Map<String, Object> config) {
        Map<String, Object> cfg = config == null ? Map.of() : config;
        int kk = checkK(k);
        LoadedModel m = model(cfg);
        int r = m.relation(relType);
        int h = anchor(m, head, "head");
        int t = anchor(m, tail, "tail");
        List<FiredRule> out = new ArrayList<>();
        if (m.rules == null) {
            return out.stream();
        }
        for (RuleChannel.Fired f : m.rules.explain(h, r, t, kk, m.order)) {
            List<Node> path = new ArrayList<>();
            for (int e : f.path()) {
                path.add(nodeOf(m, e));
            }
            String text = m.rules.text(f.rule(), m.relationKeys, e -> e < 0 ? "?" : String.valueOf(
                    nodeOf(m, e).getProperty("name", nodeOf(m, e).getElementId())));
            out.add(new FiredRule(text, f.kind(), f.confidence(), f.support(), f.bodySupport(), path));
        }
        return out.stream();
    }

    @Procedure(name = "kgemb.explain.votes", mode = Mode.READ)
    @Description("kgemb.explain.votes(head, relType, tail, config = {}) :: (node, direction, strength, weight) -- the"
            + " text-neighbour vote's terms for (head)-[:relType]->(tail): direction 'tail', the known relType answers"
            + " of head that tail resembles by text; 'head', the nodes known to have that link to tail that head"
            + " resembles; each with its strength and the relation's vote weight (the score adds weight x strength),"
            + " strongest first, as Python's LinkPredictor.explain lists them (tail_votes, head_votes); none for a"
            + " model pushed without a vote")
    public Stream<VoteTerm> explainVotes(@Name("head") Node head, @Name("relType") String relType,
            @Name("tail") Node tail, @Name(value = "config", defaultValue = "{}") Map<String, Object> config) {
        Map<String, Object> cfg = config == null ? Map.of() : config;
        LoadedModel m = model(cfg);
        int r = m.relation(relType);
        int h = anchor(m, head, "head");
        int t = anchor(m, tail, "tail");
        List<VoteTerm> out = new ArrayList<>();
        if (m.rules == null) {
            return out.stream();
        }
        // a head query (?, r, t) is the tail query (t, r + R, ?)
        int[][] queries = {{h, r, t}, {t, r + m.numRelations, h}};
        String[] directions = {"tail", "head"};
        for (int q = 0; q < 2; q++) {
            int rel = queries[q][1];
            for (RuleChannel.Vote v : m.rules.votes(queries[q][0], rel, queries[q][2])) {
                out.add(new VoteTerm(nodeOf(m, v.answer()), directions[q], v.strength(), m.rules.voteWeight(rel)));
            }
        }
        return out.stream();
    }

    @Procedure(name = "kgemb.similar", mode = Mode.READ)
    @Description("kgemb.similar(node, k = 10, config = {}) :: (node, score, rank) -- the k entities whose kgemb vectors"
            + " are nearest (cosine) to the node's")
    public Stream<Similar> similar(@Name("node") Node node, @Name(value = "k", defaultValue = "10") Long k,
            @Name(value = "config", defaultValue = "{}") Map<String, Object> config) {
        Map<String, Object> cfg = config == null ? Map.of() : config;
        int kk = checkK(k);
        LoadedModel m = model(cfg);
        int a = anchor(m, node, "node");
        List<Similar> out = new ArrayList<>();
        if (m.n <= 1) {
            return out.stream();
        }
        float[] q = m.row(a);
        // cosine = q·e / (|q| |e|): the scan ranks by q·e / |e|, the winners are re-scored in double
        float[] kq = q.clone();
        BitSet skip = new BitSet(m.n);
        skip.set(a);
        int[] ids = Scoring.topCosine(m.table, kq, Math.min(kk, m.n - 1) + Scoring.MARGIN, skip);
        double[] cos = new double[ids.length];
        Integer[] order = new Integer[ids.length];
        for (int j = 0; j < ids.length; j++) {
            cos[j] = Scoring.cosine(q, m.row(ids[j]));
            order[j] = j;
        }
        java.util.Arrays.sort(order, (x, y) -> cos[x] != cos[y] ? Double.compare(cos[y], cos[x])
                : Integer.compare(ids[x], ids[y]));
        for (int j = 0; j < Math.min(kk, ids.length); j++) {
            out.add(new Similar(nodeOf(m, ids[order[j]]), cos[order[j]], j + 1));
        }
        return out.stream();
    }

    @UserFunction(name = "kgemb.score")
    @Description("kgemb.score(head, relType, tail, config = {}) :: FLOAT -- the model's raw score of"
            + " (head)-[:relType]->(tail) (higher = more plausible); probability: true gives the calibrated probability")
    public Double score(@Name("head") Node head, @Name("relType") String relType, @Name("tail") Node tail,
            @Name(value = "config", defaultValue = "{}") Map<String, Object> config) {
        Map<String, Object> cfg = config == null ? Map.of() : config;
        LoadedModel m = model(cfg);
        int r = m.relation(relType);
        int h = anchor(m, head, "head");
        int t = anchor(m, tail, "tail");
        double s = Scoring.exact(m.interaction, m.p, m.row(h), 0, m.relations, r * m.relationDim, m.row(t), 0,
                m.dim);
        return Boolean.TRUE.equals(cfg.get("probability")) ? m.probability(r, s) : s;
    }

    @Procedure(name = "kgemb.models", mode = Mode.READ)
    @Description("kgemb.models() :: (name, interaction, dim, entities, relations, reciprocal, complete, loaded) -- the"
            + " kgemb models pushed to this database; loaded = entities held in memory (-1: not loaded yet)")
    public Stream<ModelInfo> models() {
        List<ModelInfo> out = new ArrayList<>();
        try (ResourceIterator<Node> nodes = tx.findNodes(Label.label(LoadedModel.MODEL_LABEL))) {
            while (nodes.hasNext()) {
                Node m = nodes.next();
                String name = String.valueOf(m.getProperty("name", ""));
                LoadedModel loaded = ModelCache.peek(db.databaseName(), name);
                out.add(new ModelInfo(name, String.valueOf(m.getProperty("interaction", "")),
                        num(m, "dim"), num(m, "num_entities"), num(m, "num_relations"),
                        Boolean.TRUE.equals(m.getProperty("reciprocal", false)),
                        Boolean.TRUE.equals(m.getProperty("complete", false)), loaded == null ? -1 : loaded.n));
            }
        }
        out.sort((x, y) -> x.name.compareTo(y.name));
        return out.stream();
    }

    // ------------------------------------------------------------------------------------------------------------

    private Stream<Prediction> predict(Node known, String relType, Long k, Map<String, Object> config,
            boolean tailSide) {
        Map<String, Object> cfg = config == null ? Map.of() : config;
        int kk = checkK(k);
        LoadedModel m = model(cfg);
        int r = m.relation(relType);
        int a = anchor(m, known, tailSide ? "head" : "tail");
        boolean filterKnown = flag(cfg, "filterKnown", true);
        boolean constraints = constraints(cfg);
        // the row scored, and whether candidates are scored as tails of it (reciprocal: (?, r, t) = (t, r+R, ?))
        int row = tailSide || !m.reciprocal ? r : r + m.numRelations;
        boolean asTail = tailSide || m.reciprocal;
        BitSet blocked = constraints ? m.blocked(r, tailSide) : null;
        BitSet skip = blocked == null ? null : (BitSet) blocked.clone();
        if (m.irreflexive[r]) { // a relation without self-loops in training never answers its anchor
            if (skip == null) {
                skip = new BitSet(m.n);
            }
            skip.set(a);
        }
        if (filterKnown) {
            Direction dir = tailSide ? Direction.OUTGOING : Direction.INCOMING;
            for (Relationship rel : known.getRelationships(dir, RelationshipType.withName(m.relationTypes[r]))) {
                int other = m.indexOf(rel.getOtherNode(known));
                if (other >= 0) {
                    if (skip == null) {
                        skip = new BitSet(m.n);
                    }
                    skip.set(other);
                }
            }
        }
        int dim = m.dim;
        int ro = row * m.relationDim;
        float[] av = m.row(a);
        float[] q = Scoring.query(m.interaction, asTail, av, 0, m.relations, ro, dim);
        int[] ids = Scoring.top(m.table, Scoring.Form.of(m.interaction, m.p), q, kk + Scoring.MARGIN, skip);
        // the rule channel (rules answer (?, r, t) as (t, r + R, ?)): its scores only lift, so the k best are among
        // the embedding's best and the candidates a rule fires for
        Map<Integer, Float> fired = m.rules == null ? Map.of() : m.rules.scores(a, tailSide ? r : r + m.numRelations);
        if (!fired.isEmpty()) {
            java.util.LinkedHashSet<Integer> cand = new java.util.LinkedHashSet<>();
            for (int id : ids) {
                cand.add(id);
            }
            for (int id : fired.keySet()) {
                if (skip == null || !skip.get(id)) {
                    cand.add(id);
                }
            }
            ids = cand.stream().mapToInt(Integer::intValue).toArray();
        }
        double[] exact = new double[ids.length];
        Integer[] order = new Integer[ids.length];
        for (int j = 0; j < ids.length; j++) {
            float[] cv = m.row(ids[j]);
            exact[j] = (asTail
                    ? Scoring.exact(m.interaction, m.p, av, 0, m.relations, ro, cv, 0, dim)
                    : Scoring.exact(m.interaction, m.p, cv, 0, m.relations, ro, av, 0, dim))
                    + fired.getOrDefault(ids[j], 0f);
            order[j] = j;
        }
        int[] rows = ids;
        java.util.Arrays.sort(order, (x, y) -> exact[x] != exact[y] ? Double.compare(exact[y], exact[x])
                : Integer.compare(m.order[rows[x]], m.order[rows[y]]));
        List<Prediction> out = new ArrayList<>();
        for (int j = 0; j < Math.min(kk, ids.length); j++) {
            int at = order[j];
            out.add(new Prediction(nodeOf(m, ids[at]), exact[at], m.probability(r, exact[at]), j + 1));
        }
        return out.stream();
    }

    private LoadedModel model(Map<String, Object> cfg) {
        Object name = cfg.getOrDefault("model", "kgemb");
        if (!(name instanceof String s) || s.isBlank()) {
            throw new IllegalArgumentException("config.model must be the name a model was pushed under, not " + name);
        }
        return ModelCache.get(tx, db.databaseName(), s);
    }

    private static int anchor(LoadedModel m, Node node, String what) {
        if (node == null) {
            throw new IllegalArgumentException(what + " is null: pass a node (MATCH it first; did the MATCH find"
                    + " nothing?)");
        }
        int a = m.indexOf(node);
        if (a < 0) {
            throw new IllegalArgumentException(what + " node " + node.getElementId() + " has no vector of kgemb model '"
                    + m.name + "': it is not one of the entities the model was pushed for (push the model again"
                    + " after adding nodes)");
        }
        return a;
    }

    private static int checkK(Long k) {
        if (k == null || k < 1 || k > MAX_K) {
            throw new IllegalArgumentException("k = " + k + ": give a number of answers from 1 to " + MAX_K);
        }
        return k.intValue();
    }

    private static boolean flag(Map<String, Object> cfg, String key, boolean fallback) {
        Object v = cfg.get(key);
        if (v == null) {
            return fallback;
        }
        if (v instanceof Boolean b) {
            return b;
        }
        throw new IllegalArgumentException("config." + key + " must be true or false, not " + v);
    }

    private static boolean constraints(Map<String, Object> cfg) {
        Object v = cfg.get("constraints");
        if (v instanceof String s) {
            if (s.equals("types")) {
                return true;
            }
            if (s.equals("none")) {
                return false;
            }
            throw new IllegalArgumentException("config.constraints must be true/false, 'types' or 'none', not " + s);
        }
        return flag(cfg, "constraints", true);
    }

    @SuppressWarnings("deprecation")
    private Node nodeOf(LoadedModel m, int e) {
        return tx.getNodeById(m.nodeIds[e]);
    }

    private static long num(Node n, String key) {
        Object v = n.getProperty(key, -1L);
        return v instanceof Number x ? x.longValue() : -1;
    }
}
