// The specification: the vanilla RNN's forward and backward for a padded, masked batch, in
// plain float64 loops written to be read. Every backend and kernel is compared with it, and it
// is itself checked against finite differences (ReferenceRnnTests).
using GpuDinoRnn.Backends;
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;

namespace GpuDinoRnn.Tests.Reference;

public sealed record ReferenceResult(
    double Loss,          // mean over names of each name's summed cross-entropy (nats)
    double[] RowLoss,     // (T, B)
    double[] A,           // ((T+1), B, H); slot 0 is the initial state
    double[] Dy,          // (T, B, V) dLoss/dlogits
    double[] Dz,          // (T, B, H) dLoss/dpre-activation
    double[] Grad);       // flat layout of RnnDims

public static class ReferenceRnn
{
    /// <param name="p">Parameters in the flat layout (Wax, Waa, Wya, b, by).</param>
    /// <param name="a0">Initial state (B, H), or null for zeros.</param>
    public static ReferenceResult Run(double[] p, int h, int v, Batch batch, double[]? a0 = null)
    {
        var d = new RnnDims(batch.B, batch.T, h, v);
        int B = d.B, T = d.T, H = d.H, V = d.V;
        double Wax(int i, int k) => p[d.WaxOffset + i * V + k];
        double Waa(int i, int j) => p[d.WaaOffset + i * H + j];
        double Wya(int k, int i) => p[d.WyaOffset + k * H + i];
        double Bias(int i) => p[d.BOffset + i];
        double By(int k) => p[d.ByOffset + k];

        var a = new double[(T + 1) * B * H];
        a0?.CopyTo(a, 0);
        var rowLoss = new double[T * B];
        var dy = new double[T * B * V];
        var dz = new double[T * B * H];
        var grad = new double[d.ParameterCount];

        // Forward: padded steps carry the state unchanged.
        for (int t = 0; t < T; t++)
            for (int b = 0; b < B; b++)
            {
                int r = t * B + b;
                for (int i = 0; i < H; i++)
                {
                    if (batch.Y[r] < 0)
                    {
                        a[(r + B) * H + i] = a[r * H + i];
                        continue;
                    }
                    double z = Bias(i) + (batch.X[r] >= 0 ? Wax(i, batch.X[r]) : 0);
                    for (int j = 0; j < H; j++)
                        z += Waa(i, j) * a[r * H + j];
                    a[(r + B) * H + i] = Math.Tanh(z);
                }
            }

        // Output layer: softmax, cross-entropy, dy = (softmax − onehot) / B.
        double loss = 0;
        for (int r = 0; r < T * B; r++)
        {
            int target = batch.Y[r];
            if (target < 0)
                continue;
            var logits = new double[V];
            for (int k = 0; k < V; k++)
            {
                logits[k] = By(k);
                for (int i = 0; i < H; i++)
                    logits[k] += Wya(k, i) * a[(r + B) * H + i];
            }
            double max = logits.Max();
            double sum = logits.Sum(z => Math.Exp(z - max));
            rowLoss[r] = Math.Log(sum) - (logits[target] - max);
            loss += rowLoss[r];
            for (int k = 0; k < V; k++)
                dy[r * V + k] = (Math.Exp(logits[k] - max) / sum - (k == target ? 1 : 0)) / B;
        }
        loss /= B;

        // Backpropagation through time.
        for (int t = T - 1; t >= 0; t--)
            for (int b = 0; b < B; b++)
            {
                int r = t * B + b;
                if (batch.Y[r] < 0)
                    continue;
                for (int i = 0; i < H; i++)
                {
                    double da = 0;
                    for (int k = 0; k < V; k++)
                        da += Wya(k, i) * dy[r * V + k];
                    if (t + 1 < T)
                        for (int j = 0; j < H; j++)
                            da += Waa(j, i) * dz[(r + B) * H + j];
                    double an = a[(r + B) * H + i];
                    dz[r * H + i] = da * (1 - an * an);
                }
            }

        // Weight gradients, summed over every row.
        for (int r = 0; r < T * B; r++)
        {
            for (int i = 0; i < H; i++)
            {
                if (batch.X[r] >= 0)
                    grad[d.WaxOffset + i * V + batch.X[r]] += dz[r * H + i];
                for (int j = 0; j < H; j++)
                    grad[d.WaaOffset + i * H + j] += dz[r * H + i] * a[r * H + j];
                grad[d.BOffset + i] += dz[r * H + i];
            }
            for (int k = 0; k < V; k++)
            {
                for (int i = 0; i < H; i++)
                    grad[d.WyaOffset + k * H + i] += dy[r * V + k] * a[(r + B) * H + i];
                grad[d.ByOffset + k] += dy[r * V + k];
            }
        }
        return new ReferenceResult(loss, rowLoss, a, dy, dz, grad);
    }

    /// <summary>The loss alone (for finite differences).</summary>
    public static double Loss(double[] p, int h, int v, Batch batch, double[]? a0 = null) => Run(p, h, v, batch, a0).Loss;

    /// <summary>p − lr·clip(g): clamp each element, or scale by min(1, c/‖g‖₂).</summary>
    public static double[] SgdStep(double[] p, double[] g, double lr, double clip, ClipMode mode)
    {
        var clipped = (double[])g.Clone();
        if (clip > 0 && mode == ClipMode.Value)
            for (int e = 0; e < g.Length; e++)
                clipped[e] = Math.Clamp(g[e], -clip, clip);
        if (clip > 0 && mode == ClipMode.Norm)
        {
            double norm = Math.Sqrt(g.Sum(x => x * x));
            if (norm > clip)
                for (int e = 0; e < g.Length; e++)
                    clipped[e] = g[e] * clip / norm;
        }
        return p.Select((x, e) => x - lr * clipped[e]).ToArray();
    }
}
