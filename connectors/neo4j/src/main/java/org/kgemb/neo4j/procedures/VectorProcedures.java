package org.kgemb.neo4j.procedures;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.stream.Stream;

import org.neo4j.graphdb.Label;
import org.neo4j.graphdb.Node;
import org.neo4j.graphdb.NotFoundException;
import org.neo4j.graphdb.Transaction;
import org.neo4j.procedure.Context;
import org.neo4j.procedure.Description;
import org.neo4j.procedure.Mode;
import org.neo4j.procedure.Name;
import org.neo4j.procedure.Procedure;

/**
 * Bulk vector writes for {@code kgemb push}: a batch of vectors as little-endian float32 bytes, one Bolt byte
 * array per node, stored as float32 arrays (what {@code db.create.setNodeVectorProperty} stores, and what a
 * vector index reads). Bytes cost a quarter of a list of doubles on the wire and no per-element decoding.
 */
public class VectorProcedures {
    @Context
    public Transaction tx;

    /** What one call wrote. */
    public static class Written {
        public long written;
        public long missing;

        Written(long written, long missing) {
            this.written = written;
            this.missing = missing;
        }
    }

    @Procedure(name = "kgemb.vectors.set", mode = Mode.WRITE)
    @Description(
            "kgemb.vectors.set(rows :: LIST<[elementId :: STRING, vector :: BYTES(, id :: INTEGER)]>,"
                    + " property :: STRING, label = '', idProperty = '') - sets each node's property to the vector"
                    + " given as little-endian float32 bytes (and adds the label, and sets idProperty to the row's"
                    + " id, when given); nodes that no longer exist are counted as missing")
    public Stream<Written> set(
            @Name("rows") List<List<Object>> rows,
            @Name("property") String property,
            @Name(value = "label", defaultValue = "") String label,
            @Name(value = "idProperty", defaultValue = "") String idProperty) {
        if (property == null || property.isEmpty()) {
            throw new IllegalArgumentException("kgemb.vectors.set: property must be a non-empty name");
        }
        Label extra = label == null || label.isEmpty() ? null : Label.label(label);
        boolean withId = idProperty != null && !idProperty.isEmpty();
        int width = withId ? 3 : 2;
        long written = 0;
        long missing = 0;
        int dim = -1;
        for (int i = 0; i < rows.size(); i++) {
            List<Object> row = rows.get(i);
            if (row == null || row.size() != width || !(row.get(0) instanceof String id)
                    || !(row.get(1) instanceof byte[] bytes) || (withId && !(row.get(2) instanceof Long))) {
                throw new IllegalArgumentException("kgemb.vectors.set: row " + i + " must be [elementId, vector bytes"
                        + " (float32, little-endian)" + (withId ? ", id (integer)]" : "]"));
            }
            if (bytes.length == 0 || bytes.length % Float.BYTES != 0) {
                throw new IllegalArgumentException("kgemb.vectors.set: row " + i + " has " + bytes.length
                        + " bytes, not a whole number (at least 1) of float32 values");
            }
            if (dim < 0) {
                dim = bytes.length / Float.BYTES;
            } else if (bytes.length / Float.BYTES != dim) {
                throw new IllegalArgumentException("kgemb.vectors.set: row " + i + " has "
                        + bytes.length / Float.BYTES + " dimensions, the batch " + dim);
            }
            float[] vector = new float[dim];
            ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(vector);
            for (float x : vector) {
                if (!Float.isFinite(x)) {
                    throw new IllegalArgumentException("kgemb.vectors.set: row " + i + " holds " + x
                            + "; vectors must be finite");
                }
            }
            Node node;
            try {
                node = tx.getNodeByElementId(id);
            } catch (NotFoundException | IllegalArgumentException e) {
                missing++;
                continue;
            }
            if (extra != null) {
                node.addLabel(extra);
            }
            node.setProperty(property, vector);
            if (withId) {
                node.setProperty(idProperty, row.get(2));
            }
            written++;
        }
        return Stream.of(new Written(written, missing));
    }
}
