// The specification of every model that is not the course's one vanilla layer: rnn, gru or lstm
// cells, stacked, with dropout between layers, for a padded, masked batch, in plain float64 loops
// written to be read. Each cell's forward and backward sit side by side in Cell*. The backends'
// stack paths are compared with it, and it is itself checked by finite differences and, for one
// vanilla layer, against ReferenceRnn (ReferenceStackTests).
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;

namespace GpuDinoRnn.Tests.Reference;

/// <param name="Loss">Mean over names of each name's summed cross-entropy (nats).</param>
/// <param name="RowLoss">(T, B).</param>
/// <param name="Grad">Flat layout of StackDims.</param>
/// <param name="FinalState">(B, StateSize): each layer's h (and c) after the last step.</param>
public sealed record StackResult(double Loss, double[] RowLoss, double[] Grad, double[] FinalState);

public static class ReferenceStack
{
    private static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    /// <param name="p">Parameters in the flat layout of StackDims.</param>
    /// <param name="state0">Initial state (B, StateSize), or null for zeros.</param>
    /// <param name="dropout">The mask of a training step; null for none.</param>
    public static StackResult Run(double[] p, ModelShape shape, Batch batch, double[]? state0 = null, DropoutSettings? dropout = null)
    {
        var d = shape.Stack(batch.B, batch.T);
        int B = d.B, T = d.T, H = d.H, V = d.V, L = d.Layers, GH = d.GH;
        var drop = dropout ?? DropoutSettings.None;
        double Mask(int input, int t, int b, int i) => drop.Factor(input, t, b, i);
        bool Padded(int t, int b) => batch.Y[t * B + b] < 0;

        // Per layer: h and c ((T+1), B, H) with slot 0 the initial state; the gates after their
        // activation (T, B, G·H); the GRU's Waa·h for its candidate (T, B, H); inputs (T, B, H).
        var h = new double[L][];
        var c = new double[L][];
        var act = new double[L][];
        var an = new double[L][];
        var u = new double[L][];
        for (int l = 0; l < L; l++)
        {
            h[l] = new double[(T + 1) * B * H];
            c[l] = new double[(T + 1) * B * H];
            act[l] = new double[T * B * GH];
            an[l] = new double[T * B * H];
            u[l] = new double[T * B * H];
            if (state0 is null)
                continue;
            for (int b = 0; b < B; b++)
                for (int i = 0; i < H; i++)
                {
                    h[l][b * H + i] = state0[b * shape.StateSize + l * d.StatePerLayer + i];
                    if (d.Cell == CellKind.Lstm)
                        c[l][b * H + i] = state0[b * shape.StateSize + l * d.StatePerLayer + H + i];
                }
        }

        // Forward, layer by layer.
        for (int l = 0; l < L; l++)
        {
            int wax = d.WaxOffset(l), waa = d.WaaOffset(l), bias = d.BOffset(l), inputs = d.InputsOf(l);
            for (int t = 0; t < T; t++)
                for (int b = 0; b < B; b++)
                {
                    int r = t * B + b;
                    int prev = r * H, next = (r + B) * H;
                    if (Padded(t, b))
                    {
                        for (int i = 0; i < H; i++)
                            (h[l][next + i], c[l][next + i]) = (h[l][prev + i], c[l][prev + i]);
                        continue;
                    }
                    if (l > 0)
                        for (int j = 0; j < H; j++)
                            u[l][r * H + j] = h[l - 1][next + j] * Mask(l, t, b, j);
                    var px = new double[GH];
                    var pa = new double[GH];
                    for (int gi = 0; gi < GH; gi++)
                    {
                        px[gi] = p[bias + gi];
                        if (l == 0 && batch.X[r] >= 0)
                            px[gi] += p[wax + gi * inputs + batch.X[r]];
                        if (l > 0)
                            for (int j = 0; j < H; j++)
                                px[gi] += p[wax + gi * inputs + j] * u[l][r * H + j];
                        for (int j = 0; j < H; j++)
                            pa[gi] += p[waa + gi * H + j] * h[l][prev + j];
                    }
                    for (int i = 0; i < H; i++)
                        CellForward(d.Cell, H, i, px, pa, h[l][prev + i], c[l][prev + i],
                            act[l].AsSpan(r * GH, GH), out an[l][r * H + i], out h[l][next + i], out c[l][next + i]);
                }
        }

        // Output layer: softmax, cross-entropy, dy = (softmax − onehot) / B.
        var grad = new double[d.ParameterCount];
        var rowLoss = new double[T * B];
        var dhExt = new double[T * B * H]; // dLoss/dh of the layer being differentiated, from above
        double loss = 0;
        for (int t = 0; t < T; t++)
            for (int b = 0; b < B; b++)
            {
                int r = t * B + b, target = batch.Y[r];
                if (target < 0)
                    continue;
                var top = new double[H];
                for (int i = 0; i < H; i++)
                    top[i] = h[L - 1][(r + B) * H + i] * Mask(L, t, b, i);
                var logits = new double[V];
                for (int k = 0; k < V; k++)
                {
                    logits[k] = p[d.ByOffset + k];
                    for (int i = 0; i < H; i++)
                        logits[k] += p[d.WyaOffset + k * H + i] * top[i];
                }
                double max = logits.Max();
                double sum = logits.Sum(z => Math.Exp(z - max));
                rowLoss[r] = Math.Log(sum) - (logits[target] - max);
                loss += rowLoss[r];
                for (int k = 0; k < V; k++)
                {
                    double dy = (Math.Exp(logits[k] - max) / sum - (k == target ? 1 : 0)) / B;
                    grad[d.ByOffset + k] += dy;
                    for (int i = 0; i < H; i++)
                    {
                        grad[d.WyaOffset + k * H + i] += dy * top[i];
                        dhExt[r * H + i] += p[d.WyaOffset + k * H + i] * dy * Mask(L, t, b, i);
                    }
                }
            }
        loss /= B;

        // Backpropagation through time, top layer first; each layer hands dLoss/d(its input) down.
        for (int l = L - 1; l >= 0; l--)
        {
            int wax = d.WaxOffset(l), waa = d.WaaOffset(l), bias = d.BOffset(l), inputs = d.InputsOf(l);
            var below = new double[T * B * H];
            for (int b = 0; b < B; b++)
            {
                var dhNext = new double[H];
                var dcNext = new double[H];
                for (int t = T - 1; t >= 0; t--)
                {
                    int r = t * B + b;
                    int prev = r * H, next = (r + B) * H;
                    for (int i = 0; i < H; i++)
                        dhNext[i] += dhExt[r * H + i];
                    if (Padded(t, b))
                        continue; // the state was copied: its gradient passes through unchanged
                    var dpx = new double[GH];
                    var dpa = new double[GH];
                    var dhPrev = new double[H];
                    var dcPrev = new double[H];
                    for (int i = 0; i < H; i++)
                        CellBackward(d.Cell, H, i, act[l].AsSpan(r * GH, GH), an[l][r * H + i], h[l][prev + i], c[l][prev + i], c[l][next + i],
                            dhNext[i], dcNext[i], dpx, dpa, out dhPrev[i], out dcPrev[i]);
                    for (int gi = 0; gi < GH; gi++)
                    {
                        grad[bias + gi] += dpx[gi];
                        if (l == 0 && batch.X[r] >= 0)
                            grad[wax + gi * inputs + batch.X[r]] += dpx[gi];
                        for (int j = 0; j < H; j++)
                        {
                            if (l > 0)
                            {
                                grad[wax + gi * inputs + j] += dpx[gi] * u[l][r * H + j];
                                below[r * H + j] += p[wax + gi * inputs + j] * dpx[gi] * Mask(l, t, b, j);
                            }
                            grad[waa + gi * H + j] += dpa[gi] * h[l][prev + j];
                            dhPrev[j] += p[waa + gi * H + j] * dpa[gi];
                        }
                    }
                    (dhNext, dcNext) = (dhPrev, dcPrev);
                }
            }
            dhExt = below;
        }

        var final = new double[B * shape.StateSize];
        for (int l = 0; l < L; l++)
            for (int b = 0; b < B; b++)
                for (int i = 0; i < H; i++)
                {
                    final[b * shape.StateSize + l * d.StatePerLayer + i] = h[l][(T * B + b) * H + i];
                    if (d.Cell == CellKind.Lstm)
                        final[b * shape.StateSize + l * d.StatePerLayer + H + i] = c[l][(T * B + b) * H + i];
                }
        return new StackResult(loss, rowLoss, grad, final);
    }

    /// <summary>The loss alone (for finite differences).</summary>
    public static double Loss(double[] p, ModelShape shape, Batch batch, double[]? state0 = null, DropoutSettings? dropout = null) =>
        Run(p, shape, batch, state0, dropout).Loss;

    /// <summary>
    /// Unit i of one step. px = Wax·u + b and pa = Waa·h₋ (all gates); act receives the gates
    /// after their activation, aN the GRU's candidate term Waa_n·h₋ (the backward pass needs it).
    /// rnn: h = tanh(px + pa).
    /// gru: r = σ(px_r + pa_r), z = σ(px_z + pa_z), n = tanh(px_n + r·pa_n), h = (1 − z)·n + z·h₋.
    /// lstm: i, f, o = σ(px + pa), g = tanh(px + pa), c = f·c₋ + i·g, h = o·tanh(c).
    /// </summary>
    private static void CellForward(CellKind cell, int H, int i, double[] px, double[] pa, double hPrev, double cPrev,
        Span<double> act, out double aN, out double hNext, out double cNext)
    {
        aN = 0;
        cNext = 0;
        switch (cell)
        {
            case CellKind.Rnn:
                hNext = act[i] = Math.Tanh(px[i] + pa[i]);
                break;
            case CellKind.Gru:
                double r = act[i] = Sigmoid(px[i] + pa[i]);
                double z = act[H + i] = Sigmoid(px[H + i] + pa[H + i]);
                aN = pa[2 * H + i];
                double n = act[2 * H + i] = Math.Tanh(px[2 * H + i] + r * aN);
                hNext = (1 - z) * n + z * hPrev;
                break;
            default:
                double ig = act[i] = Sigmoid(px[i] + pa[i]);
                double fg = act[H + i] = Sigmoid(px[H + i] + pa[H + i]);
                double gg = act[2 * H + i] = Math.Tanh(px[2 * H + i] + pa[2 * H + i]);
                double og = act[3 * H + i] = Sigmoid(px[3 * H + i] + pa[3 * H + i]);
                cNext = fg * cPrev + ig * gg;
                hNext = og * Math.Tanh(cNext);
                break;
        }
    }

    /// <summary>
    /// The mirror of CellForward for unit i: from dh (and dc) of the new state, the gradients of
    /// px and pa (they differ only in the GRU's candidate, where pa is scaled by r) and the parts
    /// of dh₋ and dc₋ that do not go through Waa.
    /// </summary>
    private static void CellBackward(CellKind cell, int H, int i, ReadOnlySpan<double> act, double aN, double hPrev, double cPrev, double cNext,
        double dh, double dc, double[] dpx, double[] dpa, out double dhPrev, out double dcPrev)
    {
        dhPrev = 0;
        dcPrev = 0;
        switch (cell)
        {
            case CellKind.Rnn:
                dpx[i] = dpa[i] = dh * (1 - act[i] * act[i]);
                break;
            case CellKind.Gru:
                double r = act[i], z = act[H + i], n = act[2 * H + i];
                double dn = dh * (1 - z) * (1 - n * n);
                dpx[2 * H + i] = dn;
                dpa[2 * H + i] = dn * r;
                dpx[i] = dpa[i] = dn * aN * r * (1 - r);
                dpx[H + i] = dpa[H + i] = dh * (hPrev - n) * z * (1 - z);
                dhPrev = dh * z;
                break;
            default:
                double ig = act[i], fg = act[H + i], gg = act[2 * H + i], og = act[3 * H + i];
                double tc = Math.Tanh(cNext);
                double dcTotal = dc + dh * og * (1 - tc * tc);
                dpx[i] = dpa[i] = dcTotal * gg * ig * (1 - ig);
                dpx[H + i] = dpa[H + i] = dcTotal * cPrev * fg * (1 - fg);
                dpx[2 * H + i] = dpa[2 * H + i] = dcTotal * ig * (1 - gg * gg);
                dpx[3 * H + i] = dpa[3 * H + i] = dh * tc * og * (1 - og);
                dcPrev = dcTotal * fg;
                break;
        }
    }
}
