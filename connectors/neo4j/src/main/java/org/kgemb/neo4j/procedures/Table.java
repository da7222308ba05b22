package org.kgemb.neo4j.procedures;

/**
 * Entity vectors in a column-block layout: rows are grouped in blocks of {@link #BLOCK}, and inside a block the
 * values of one dimension lie next to each other ({@code blocks[b][j][i]} is dimension {@code j} of row
 * {@code b * BLOCK + i}). A scan then runs, per dimension, one contiguous multiply-add over the block's rows into
 * an accumulator row, {@code acc[i] += q_j * column[i]}, a loop HotSpot's C2 compiles to SIMD instructions (no
 * incubator Vector API on Java 17; one array per column, because C2 does not vectorise a loop whose two arrays are
 * indexed with different loop-invariant offsets), and each byte of the table is read once per query (the
 * memory-bandwidth floor of a scan).
 *
 * <p>Kernels: {@link #dot} (DistMult, ComplEx, and the distance forms through {@code |q|² - 2 q·e + |e|²} with
 * the squared norms kept here), {@link #l1} (TransE with p = 1) and {@link #dots}, several queries over one
 * block at once (kgemb.rank: the block is read from memory once for all evidence items).
 */
final class Table {
    /** Rows per block: a block of 256 dimensions is 256 KiB, its accumulator row 1 KiB (both cache-resident). */
    static final int BLOCK = 256;

    /** Rows held (grows while the model loads, then stays). */
    int n;
    final int dim;
    float[][][] blocks;
    /** {@code |e|²} of every row (float, as the scan uses it). */
    float[] squaredNorms;

    /** An empty table with room for {@code capacity} rows (more are added as needed). */
    Table(int capacity, int dim) {
        this.dim = dim;
        int count = Math.max(1, (capacity + BLOCK - 1) / BLOCK);
        blocks = new float[count][][];
        squaredNorms = new float[count * BLOCK];
    }

    /** A table of {@code n} rows given row by row ({@code rows[e * dim + j]}). */
    static Table of(float[] rows, int n, int dim) {
        Table t = new Table(n, dim);
        for (int e = 0; e < n; e++) {
            t.append(rows, e * dim);
        }
        return t;
    }

    /** Add a row from {@code src[at .. at + dim)}; its index is the number of rows before. */
    int append(float[] src, int at) {
        int e = n;
        int b = e / BLOCK;
        if (b == blocks.length) {
            blocks = java.util.Arrays.copyOf(blocks, blocks.length * 2);
            squaredNorms = java.util.Arrays.copyOf(squaredNorms, blocks.length * BLOCK);
        }
        if (blocks[b] == null) {
            blocks[b] = new float[dim][BLOCK];
        }
        float[][] block = blocks[b];
        int i = e % BLOCK;
        float s = 0;
        for (int j = 0; j < dim; j++) {
            float x = src[at + j];
            block[j][i] = x;
            s += x * x;
        }
        squaredNorms[e] = s;
        n++;
        return e;
    }

    /** Row {@code e} into {@code out[at .. at + dim)}. */
    void row(int e, float[] out, int at) {
        float[][] block = blocks[e / BLOCK];
        int i = e % BLOCK;
        for (int j = 0; j < dim; j++) {
            out[at + j] = block[j][i];
        }
    }

    float[] row(int e) {
        float[] out = new float[dim];
        row(e, out, 0);
        return out;
    }

    /** Rows in block {@code b}. */
    int rows(int b) {
        return Math.min(BLOCK, n - b * BLOCK);
    }

    int numBlocks() {
        return (n + BLOCK - 1) / BLOCK;
    }

    /** {@code acc[i] = q · row(b * BLOCK + i)} for the rows of block {@code b}. */
    void dot(int b, float[] q, float[] acc) {
        float[][] block = blocks[b];
        java.util.Arrays.fill(acc, 0f);
        for (int j = 0; j < dim; j++) {
            float qj = q[j];
            float[] col = block[j];
            for (int i = 0; i < BLOCK; i++) {
                acc[i] += qj * col[i];
            }
        }
    }

    /** {@code acc[i] = sum_j |q_j - row_j|} (L1 distance) for the rows of block {@code b}. */
    void l1(int b, float[] q, float[] acc) {
        float[][] block = blocks[b];
        java.util.Arrays.fill(acc, 0f);
        for (int j = 0; j < dim; j++) {
            float qj = q[j];
            float[] col = block[j];
            for (int i = 0; i < BLOCK; i++) {
                acc[i] += Math.abs(qj - col[i]);
            }
        }
    }

    /** {@code acc[k][i] = qs[k] · row(b * BLOCK + i)} for every query {@code k}: four queries per pass over the
     *  block, so each value is loaded once for four multiply-adds. */
    void dots(int b, float[][] qs, float[][] acc) {
        float[][] block = blocks[b];
        int m = qs.length;
        for (int k = 0; k < m; k++) {
            java.util.Arrays.fill(acc[k], 0f);
        }
        int k = 0;
        for (; k + 3 < m; k += 4) {
            float[] q0 = qs[k], q1 = qs[k + 1], q2 = qs[k + 2], q3 = qs[k + 3];
            float[] a0 = acc[k], a1 = acc[k + 1], a2 = acc[k + 2], a3 = acc[k + 3];
            for (int j = 0; j < dim; j++) {
                float x0 = q0[j], x1 = q1[j], x2 = q2[j], x3 = q3[j];
                float[] col = block[j];
                for (int i = 0; i < BLOCK; i++) {
                    float v = col[i];
                    a0[i] += x0 * v;
                    a1[i] += x1 * v;
                    a2[i] += x2 * v;
                    a3[i] += x3 * v;
                }
            }
        }
        for (; k < m; k++) {
            float[] q = qs[k], a = acc[k];
            for (int j = 0; j < dim; j++) {
                float x = q[j];
                float[] col = block[j];
                for (int i = 0; i < BLOCK; i++) {
                    a[i] += x * col[i];
                }
            }
        }
    }

    /** Bytes a scan of the whole table reads. */
    long bytes() {
        return (long) numBlocks() * BLOCK * dim * Float.BYTES;
    }
}
