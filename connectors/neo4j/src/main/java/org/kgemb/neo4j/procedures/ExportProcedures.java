package org.kgemb.neo4j.procedures;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.Spliterator;
import java.util.Spliterators;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;

import org.neo4j.exceptions.KernelException;
import org.neo4j.graphdb.Direction;
import org.neo4j.graphdb.Transaction;
import org.neo4j.internal.kernel.api.NodeCursor;
import org.neo4j.internal.kernel.api.Read;
import org.neo4j.internal.kernel.api.RelationshipTraversalCursor;
import org.neo4j.internal.kernel.api.TokenRead;
import org.neo4j.kernel.api.KernelTransaction;
import org.neo4j.kernel.impl.coreapi.InternalTransaction;
import org.neo4j.procedure.Context;
import org.neo4j.procedure.Description;
import org.neo4j.procedure.Mode;
import org.neo4j.procedure.Name;
import org.neo4j.procedure.Procedure;
import org.neo4j.storageengine.api.RelationshipSelection;
import org.neo4j.token.api.TokenConstants;

/**
 * Bulk graph reads for {@code kgemb pull}: the relationships as packed blocks of little-endian numbers, one Bolt
 * byte array per block instead of a record (and three values) per relationship, read through the kernel's cursors
 * (which apply the user's access rights) in the order of the pull's node query: start nodes by id, each with its
 * outgoing relationships.
 */
public class ExportProcedures {
    /** Bytes of one relationship in a block: start node id (int64), type index (int32), end node id (int64). */
    static final int RECORD_BYTES = Long.BYTES + Integer.BYTES + Long.BYTES;

    static final int MAX_BATCH = 1 << 22;

    @Context
    public Transaction tx;

    /** One block: the types first seen in it (appended to the table the stream's type indexes point into). */
    public static class Block {
        public List<String> types;
        public byte[] data;

        Block(List<String> types, byte[] data) {
            this.types = types;
            this.data = data;
        }
    }

    @Procedure(name = "kgemb.export.relationships", mode = Mode.READ)
    @Description("kgemb.export.relationships(labels = [], types = [], excludeLabels = [], excludeTypes = [],"
            + " batchSize = 65536) :: (types, data) - every relationship (of one of types, when given; of none of"
            + " excludeTypes) between two nodes that have one of labels (when given) and none of excludeLabels,"
            + " in blocks of batchSize: data holds one 20-byte little-endian record per relationship (start node"
            + " id int64, type index int32, end node id int64), types the type names new in this block (a type's"
            + " index is its position in all blocks' types so far); start nodes by id, each with its outgoing"
            + " relationships")
    public Stream<Block> relationships(
            @Name(value = "labels", defaultValue = "[]") List<String> labels,
            @Name(value = "types", defaultValue = "[]") List<String> types,
            @Name(value = "excludeLabels", defaultValue = "[]") List<String> excludeLabels,
            @Name(value = "excludeTypes", defaultValue = "[]") List<String> excludeTypes,
            @Name(value = "batchSize", defaultValue = "65536") Long batchSize) {
        if (batchSize == null || batchSize < 1 || batchSize > MAX_BATCH) {
            throw new IllegalArgumentException("kgemb.export.relationships: batchSize must be 1 to " + MAX_BATCH
                    + ", not " + batchSize);
        }
        KernelTransaction ktx = ((InternalTransaction) tx).kernelTransaction();
        TokenRead tokens = ktx.tokenRead();
        int[] wanted = tokenIds(labels, tokens::nodeLabel);
        int[] unwanted = tokenIds(excludeLabels, tokens::nodeLabel);
        boolean anyType = types == null || types.isEmpty();
        int[] typeIds = tokenIds(types, tokens::relationshipType);
        int[] skipTypes = tokenIds(excludeTypes, tokens::relationshipType);
        Blocks blocks = new Blocks(ktx, tokens, wanted, (labels == null || labels.isEmpty()), unwanted,
                anyType ? null : typeIds, skipTypes, batchSize.intValue());
        return StreamSupport.stream(Spliterators.spliteratorUnknownSize(blocks, Spliterator.ORDERED), false)
                .onClose(blocks::close);
    }

    interface Lookup {
        int id(String name);
    }

    /** The token ids of the names that exist (a name the database never used matches nothing). */
    static int[] tokenIds(List<String> names, Lookup lookup) {
        if (names == null) {
            return new int[0];
        }
        return names.stream().mapToInt(n -> {
            if (n == null) {
                throw new IllegalArgumentException("kgemb.export.relationships: a label or type name is null");
            }
            return lookup.id(n);
        }).filter(id -> id != TokenConstants.NO_TOKEN).distinct().sorted().toArray();
    }

    /** The blocks, filled one at a time as the caller reads them (the server never holds the whole graph). */
    static final class Blocks implements Iterator<Block>, AutoCloseable {
        private final KernelTransaction ktx;
        private final TokenRead tokens;
        private final Read read;
        private final NodeCursor heads;
        private final RelationshipTraversalCursor rels;
        private final RelationshipSelection selection;
        private final int[] skipTypes;
        private final int batch;
        private final Nodes accepted;
        /** type token -> index in the stream's table, -1 when not yet sent. */
        private int[] typeIndex = new int[0];
        private int typesSent;
        private long head = -1;
        private boolean inHead;
        private boolean done;
        private Block next;

        Blocks(KernelTransaction ktx, TokenRead tokens, int[] wanted, boolean anyLabel, int[] unwanted,
                int[] typeIds, int[] skipTypes, int batch) {
            this.ktx = ktx;
            this.tokens = tokens;
            this.read = ktx.dataRead();
            this.skipTypes = skipTypes;
            this.batch = batch;
            this.selection = typeIds == null ? RelationshipSelection.selection(Direction.OUTGOING)
                    : typeIds.length == 0 ? RelationshipSelection.NO_RELATIONSHIPS
                    : RelationshipSelection.selection(typeIds, Direction.OUTGOING);
            var cursors = ktx.cursors();
            heads = cursors.allocateNodeCursor(ktx.cursorContext(), ktx.memoryTracker());
            rels = cursors.allocateRelationshipTraversalCursor(ktx.cursorContext(), ktx.memoryTracker());
            accepted = new Nodes();
            if (anyLabel || wanted.length > 0) { // labels given, none in the database: no node qualifies
                read.allNodesScan(heads);
                while (heads.next()) {
                    if (qualifies(heads, anyLabel, wanted, unwanted)) {
                        accepted.add(heads.nodeReference());
                    }
                }
            }
        }

        private static boolean qualifies(NodeCursor node, boolean anyLabel, int[] wanted, int[] unwanted) {
            for (int label : unwanted) {
                if (node.hasLabel(label)) {
                    return false;
                }
            }
            if (anyLabel) {
                return true;
            }
            for (int label : wanted) {
                if (node.hasLabel(label)) {
                    return true;
                }
            }
            return false;
        }

        @Override
        public boolean hasNext() {
            if (next == null && !done) {
                next = fill();
            }
            return next != null;
        }

        @Override
        public Block next() {
            if (!hasNext()) {
                throw new NoSuchElementException();
            }
            Block b = next;
            next = null;
            return b;
        }

        /** The next block of up to {@code batch} relationships; null when there are no more. */
        private Block fill() {
            ktx.assertOpen(); // a terminated or timed-out transaction stops the stream
            ByteBuffer out = ByteBuffer.allocate(RECORD_BYTES * batch).order(ByteOrder.LITTLE_ENDIAN);
            List<String> fresh = new ArrayList<>();
            int n = 0;
            while (n < batch) {
                if (!inHead) {
                    head = accepted.nextAfter(head);
                    if (head < 0) {
                        done = true;
                        break;
                    }
                    read.singleNode(head, heads);
                    if (!heads.next()) {
                        continue; // deleted since the scan
                    }
                    heads.relationships(rels, selection);
                    inHead = true;
                }
                if (!rels.next()) {
                    inHead = false;
                    continue;
                }
                int type = rels.type();
                long tail = rels.targetNodeReference();
                if (Arrays.binarySearch(skipTypes, type) >= 0 || !accepted.contains(tail)) {
                    continue;
                }
                out.putLong(head).putInt(index(type, fresh)).putLong(tail);
                n++;
            }
            if (n == 0 && fresh.isEmpty()) {
                return null;
            }
            return new Block(fresh, Arrays.copyOf(out.array(), n * RECORD_BYTES));
        }

        /** The type's index in the stream's table, adding its name to this block's new types when first seen. */
        private int index(int type, List<String> fresh) {
            if (type >= typeIndex.length) {
                int old = typeIndex.length;
                typeIndex = Arrays.copyOf(typeIndex, Math.max(type + 1, old * 2));
                Arrays.fill(typeIndex, old, typeIndex.length, -1);
            }
            int i = typeIndex[type];
            if (i < 0) {
                try {
                    fresh.add(tokens.relationshipTypeName(type));
                } catch (KernelException e) {
                    throw new IllegalStateException("kgemb.export.relationships: relationship type " + type
                            + " has no name", e);
                }
                i = typeIndex[type] = typesSent++;
            }
            return i;
        }

        @Override
        public void close() {
            heads.close();
            rels.close();
        }
    }

    /** A set of node ids as a bit set over longs (node ids are dense, from 0). */
    static final class Nodes {
        private long[] words = new long[1024];

        void add(long id) {
            int w = (int) (id >>> 6);
            if (w >= words.length) {
                words = Arrays.copyOf(words, Math.max(w + 1, words.length * 2));
            }
            words[w] |= 1L << id;
        }

        boolean contains(long id) {
            int w = (int) (id >>> 6);
            return id >= 0 && w < words.length && (words[w] & (1L << id)) != 0;
        }

        /** The smallest id in the set greater than {@code id}; -1 when none. */
        long nextAfter(long id) {
            long from = id + 1;
            int w = (int) (from >>> 6);
            if (w >= words.length) {
                return -1;
            }
            long word = words[w] & (-1L << from);
            while (true) {
                if (word != 0) {
                    return ((long) w << 6) + Long.numberOfTrailingZeros(word);
                }
                if (++w == words.length) {
                    return -1;
                }
                word = words[w];
            }
        }
    }
}
