package org.kgemb.neo4j.procedures;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import org.neo4j.graphdb.Label;
import org.neo4j.graphdb.Node;
import org.neo4j.graphdb.ResourceIterator;
import org.neo4j.graphdb.Transaction;

/**
 * The models held in memory, per database and model name. A call reads only the model node's {@code updated_at}
 * (set by every push) and reloads the vectors when it changed.
 */
final class ModelCache {
    private static final Map<String, LoadedModel> MODELS = new ConcurrentHashMap<>();

    private ModelCache() {}

    static Node modelNode(Transaction tx, String name) {
        try (ResourceIterator<Node> found = tx.findNodes(Label.label(LoadedModel.MODEL_LABEL), "name", name)) {
            if (!found.hasNext()) {
                throw new IllegalArgumentException("no kgemb model '" + name + "' in this database: push one with"
                        + " `kgemb neo4j push DIR --uri URI` (or pass {model: 'NAME'} in the config; CALL kgemb.models()"
                        + " lists them)");
            }
            return found.next();
        }
    }

    static LoadedModel get(Transaction tx, String database, String name) {
        Node m = modelNode(tx, name);
        if (!Boolean.TRUE.equals(m.getProperty("complete", false))) {
            throw new IllegalArgumentException("the push of kgemb model '" + name + "' did not finish: run"
                    + " `kgemb neo4j push` again");
        }
        String version = String.valueOf(m.getProperty("updated_at", "")) + "/" + m.getProperty("signature", "");
        String key = database + "\u0000" + name;
        LoadedModel cached = MODELS.get(key);
        if (cached != null && cached.version.equals(version)) {
            return cached;
        }
        synchronized (ModelCache.class) {
            cached = MODELS.get(key);
            if (cached != null && cached.version.equals(version)) {
                return cached;
            }
            MODELS.remove(key); // let the old vectors go before the new ones are read
            LoadedModel loaded = LoadedModel.load(tx, m, name, version);
            MODELS.put(key, loaded);
            return loaded;
        }
    }

    static LoadedModel peek(String database, String name) {
        return MODELS.get(database + "\u0000" + name);
    }
}
