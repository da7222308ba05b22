package org.kgemb.neo4j.procedures;

import java.util.Arrays;
import java.util.BitSet;
import java.util.List;

/**
 * kgemb.rank's work: {@code L(x)} of {@link Evidence} for every candidate in one pass over the table (all evidence
 * items' model scores from each block at once), the best {@code k} plus a margin kept, {@code sum_y exp(L(y))}
 * accumulated on the way; the winners are then re-scored exactly (double precision) and normalised.
 */
final class Ranking {
    private Ranking() {}

    /** The ranked candidates, best first, with {@code L(x)}, {@code P(x)} and each item's {@code ln p_i(x)}. */
    record Result(int[] ids, double[] total, double[] probability, double[][] logProbability) {}

    /** One range's best candidates and its share of the normalisation ({@code sum exp(L - max)}). */
    static final class Part extends Scoring.TopK {
        double max = Double.NEGATIVE_INFINITY;
        double sum;

        Part(int k, int[] tieKey) {
            super(k, tieKey);
        }

        void add(double value) {
            if (value > max) {
                sum = sum * Math.exp(max - value) + 1.0;
                max = value;
            } else {
                sum += Math.exp(value - max);
            }
        }

        void add(double logSum, double partMax) {
            if (partMax == Double.NEGATIVE_INFINITY) {
                return;
            }
            if (partMax > max) {
                sum = sum * Math.exp(max - partMax) + logSum;
                max = partMax;
            } else {
                sum += logSum * Math.exp(partMax - max);
            }
        }
    }

    /** {@code ln p} summed over items from the items' raw scores: {@code -ln prod(1 + exp(-z_i))}, one logarithm
     *  per candidate (each item's {@code ln sigmoid} where the product would overflow). */
    static double sumLogSigmoid(double[] z, int m) {
        double prod = 1.0;
        for (int i = 0; i < m; i++) {
            prod *= 1.0 + Math.exp(-z[i]);
        }
        if (prod < Double.MAX_VALUE) {
            return -Math.log(prod);
        }
        double s = 0;
        for (int i = 0; i < m; i++) {
            s += Scoring.logSigmoid(z[i]);
        }
        return s;
    }

    /**
     * The scan: {@code L(x) = ev[x] + alpha * sum_i ln sigmoid(a * score_i(x) + b)} for every candidate not in
     * {@code skip}, with score_i the scan's approximation of the raw score against query {@code qs[i]}. Returns
     * the best {@code k} (ties: smaller {@code order}) and the normalisation of all of them.
     */
    static Part scan(Table t, Scoring.Form form, float[][] qs, double a, double b, double alpha, double[] ev,
            BitSet skip, int k, int[] order) {
        int m = qs.length;
        float[][] kqs = new float[m][];
        double[] qn = new double[m];
        for (int i = 0; i < m; i++) {
            kqs[i] = Scoring.kernelQuery(form, qs[i]);
            qn[i] = Scoring.squared(qs[i]);
        }
        boolean model = alpha > 0;
        List<Part> parts = Scoring.parallel(t, (from, to) -> {
            Part part = new Part(k, order);
            float[][] acc = new float[m][Table.BLOCK];
            double[] z = new double[m];
            for (int blk = from; blk < to; blk++) {
                if (model) {
                    if (form == Scoring.Form.L1) {
                        for (int i = 0; i < m; i++) {
                            t.l1(blk, kqs[i], acc[i]);
                        }
                    } else {
                        t.dots(blk, kqs, acc);
                    }
                }
                int base = blk * Table.BLOCK, rows = t.rows(blk);
                for (int c = 0; c < rows; c++) {
                    int x = base + c;
                    if (skip != null && skip.get(x)) {
                        continue;
                    }
                    double total = ev[x];
                    if (model) {
                        for (int i = 0; i < m; i++) {
                            double v = acc[i][c];
                            double s = switch (form) {
                                case DOT -> v;
                                case DISTANCE -> -Math.sqrt(Math.max(0.0, qn[i] - (v - t.squaredNorms[x])));
                                default -> -v;
                            };
                            z[i] = a * s + b;
                        }
                        total += alpha * sumLogSigmoid(z, m);
                    }
                    part.add(total);
                    part.offer(total, x);
                }
            }
            return part;
        });
        Part all = new Part(k, order);
        for (Part p : parts) {
            for (int j = 0; j < p.size; j++) {
                all.offer(p.values[j], p.ids[j]);
            }
            all.add(p.sum, p.max);
        }
        return all;
    }

    static Result rank(LoadedModel m, Evidence.Annotations ann, int r, boolean tailSide, int[] anchors, BitSet skip,
            int k) {
        Evidence.Params p = m.evidence;
        int items = anchors.length;
        double[] ev = Evidence.totals(ann, anchors, p);
        int row = tailSide || !m.reciprocal ? r : r + m.numRelations;
        boolean asTail = tailSide || m.reciprocal;
        int ro = row * m.relationDim;
        Scoring.Form form = Scoring.Form.of(m.interaction, m.p);
        float[][] anchorRows = new float[items][];
        float[][] qs = new float[items][];
        for (int i = 0; i < items; i++) {
            anchorRows[i] = m.row(anchors[i]);
            qs[i] = Scoring.query(m.interaction, asTail, anchorRows[i], 0, m.relations, ro, m.dim);
        }
        double a = m.calA[r], b = m.calB[r];
        Part found = scan(m.table, form, qs, a, b, p.alpha(), ev, skip, Math.min(m.n, k + Scoring.MARGIN), m.order);
        int c = found.size;
        int[] ids = Arrays.copyOf(found.ids, c);
        double[] exact = new double[c];
        double[][] logp = new double[c][items];
        double sum = found.sum;
        for (int j = 0; j < c; j++) {
            int x = ids[j];
            float[] xv = m.row(x);
            double lp = 0;
            for (int i = 0; i < items; i++) {
                double s = asTail
                        ? Scoring.exact(m.interaction, m.p, anchorRows[i], 0, m.relations, ro, xv, 0, m.dim)
                        : Scoring.exact(m.interaction, m.p, xv, 0, m.relations, ro, anchorRows[i], 0, m.dim);
                logp[j][i] = Scoring.logSigmoid(a * s + b);
                lp += logp[j][i];
            }
            exact[j] = ev[x] + (p.alpha() > 0 ? p.alpha() * lp : 0.0);
            // the winners dominate the normalisation: their exact values replace the scan's
            sum += Math.exp(exact[j] - found.max) - Math.exp(found.values[j] - found.max);
        }
        double logZ = found.max + Math.log(Math.max(sum, Double.MIN_NORMAL));
        Integer[] byScore = new Integer[c];
        for (int j = 0; j < c; j++) {
            byScore[j] = j;
        }
        Arrays.sort(byScore, (x, y) -> exact[x] != exact[y] ? Double.compare(exact[y], exact[x])
                : Integer.compare(m.order[ids[x]], m.order[ids[y]]));
        int out = Math.min(k, c);
        int[] rankedIds = new int[out];
        double[] total = new double[out];
        double[] probability = new double[out];
        double[][] rankedLogp = new double[out][];
        for (int j = 0; j < out; j++) {
            int at = byScore[j];
            rankedIds[j] = ids[at];
            total[j] = exact[at];
            probability[j] = Math.exp(exact[at] - logZ);
            rankedLogp[j] = logp[at];
        }
        return new Result(rankedIds, total, probability, rankedLogp);
    }
}
