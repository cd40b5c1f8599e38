// The vanilla tanh cell on the device: forward and backward of one time step, side by side,
// then the weight gradients, which do not depend on the previous step and so are summed over
// all rows at once. CPU twin: CpuBackend (same names); spec: tests/Reference/ReferenceRnn.
using ILGPU;
using ILGPU.Algorithms;

namespace GpuDinoRnn.Kernels;

public static class RnnKernels
{
    /// <summary>
    /// a_{t+1} = tanh(Wax·x_t + Waa·a_t + b) for every (b, i); index = b·H + i.
    /// A is ((T+1), B, H): slot 0 holds the initial state. A padded step (target &lt; 0) copies
    /// the state forward, so slot T holds each name's final state.
    /// </summary>
    /// <param name="index">b·H + i.</param>
    /// <param name="d">Shapes.</param>
    /// <param name="t">The time step, 0-based.</param>
    /// <param name="p">Parameters (flat layout of <see cref="RnnDims"/>).</param>
    /// <param name="x">Input ids (T, B); -1 is START (the zero vector).</param>
    /// <param name="y">Target ids (T, B); -1 marks padding.</param>
    /// <param name="a">Hidden states ((T+1), B, H).</param>
    public static void ForwardStep(
        Index1D index, RnnDims d, int t,
        ArrayView<float> p, ArrayView<int> x, ArrayView<int> y, ArrayView<float> a)
    {
        int b = index / d.H;
        int i = index - b * d.H;
        int r = t * d.B + b;
        int prev = r * d.H;
        int next = (r + d.B) * d.H;
        if (y[r] < 0)
        {
            a[next + i] = a[prev + i];
            return;
        }
        float z = p[d.BOffset + i];
        int xr = x[r];
        if (xr >= 0)
            z += p[d.WaxOffset + i * d.V + xr];
        int waa = d.WaaOffset + i * d.H;
        for (int j = 0; j < d.H; j++)
            z += p[waa + j] * a[prev + j];
        a[next + i] = XMath.Tanh(z);
    }

    /// <summary>
    /// dz_t = (Wyaᵀ·dy_t + Waaᵀ·dz_{t+1}) ⊙ (1 − a_{t+1}²) for every (b, i); run for t = T−1 … 0.
    /// dz of a padded step is 0, which also stops the carry into earlier steps.
    /// </summary>
    /// <param name="index">b·H + i.</param>
    /// <param name="d">Shapes.</param>
    /// <param name="t">The time step, 0-based.</param>
    /// <param name="p">Parameters.</param>
    /// <param name="y">Target ids (T, B); -1 marks padding.</param>
    /// <param name="a">Hidden states ((T+1), B, H).</param>
    /// <param name="dy">Gradient of the loss with respect to the logits (T, B, V).</param>
    /// <param name="dz">Gradient with respect to the pre-activation (T, B, H); written at step t.</param>
    public static void BackwardStep(
        Index1D index, RnnDims d, int t,
        ArrayView<float> p, ArrayView<int> y, ArrayView<float> a,
        ArrayView<float> dy, ArrayView<float> dz)
    {
        int b = index / d.H;
        int i = index - b * d.H;
        int r = t * d.B + b;
        if (y[r] < 0)
        {
            dz[r * d.H + i] = 0f;
            return;
        }
        float da = 0f;
        int dyRow = r * d.V;
        for (int k = 0; k < d.V; k++)
            da += p[d.WyaOffset + k * d.H + i] * dy[dyRow + k];
        if (t + 1 < d.T)
        {
            int dzNext = (r + d.B) * d.H;
            for (int j = 0; j < d.H; j++)
                da += p[d.WaaOffset + j * d.H + i] * dz[dzNext + j];
        }
        float an = a[(r + d.B) * d.H + i];
        dz[r * d.H + i] = da * (1f - an * an);
    }

    /// <summary>
    /// Every weight gradient, one element per thread, each a sum over all rows in a fixed order
    /// (no atomics, so results are identical on every run):
    /// dWax[i,v] = Σ dz[r,i]·[x_r = v], dWaa[i,j] = Σ dz[r,i]·a_t[r,j],
    /// dWya[k,i] = Σ dy[r,k]·a_{t+1}[r,i], db[i] = Σ dz[r,i], dby[k] = Σ dy[r,k].
    /// Padded rows contribute nothing: their dz and dy are 0.
    /// </summary>
    /// <param name="index">Element of the flat gradient buffer.</param>
    /// <param name="d">Shapes.</param>
    /// <param name="x">Input ids (T, B).</param>
    /// <param name="a">Hidden states ((T+1), B, H).</param>
    /// <param name="dy">Gradient with respect to the logits (T, B, V).</param>
    /// <param name="dz">Gradient with respect to the pre-activation (T, B, H).</param>
    /// <param name="g">Gradients, overwritten (flat layout of <see cref="RnnDims"/>).</param>
    public static void WeightGradients(
        Index1D index, RnnDims d,
        ArrayView<int> x, ArrayView<float> a, ArrayView<float> dy, ArrayView<float> dz,
        ArrayView<float> g)
    {
        int e = index;
        int rows = d.Rows;
        float sum = 0f;
        if (e < d.WaaOffset)
        {
            int i = e / d.V;
            int v = e - i * d.V;
            for (int r = 0; r < rows; r++)
            {
                if (x[r] == v)
                    sum += dz[r * d.H + i];
            }
        }
        else if (e < d.WyaOffset)
        {
            int ij = e - d.WaaOffset;
            int i = ij / d.H;
            int j = ij - i * d.H;
            for (int r = 0; r < rows; r++)
                sum += dz[r * d.H + i] * a[r * d.H + j];
        }
        else if (e < d.BOffset)
        {
            int ki = e - d.WyaOffset;
            int k = ki / d.H;
            int i = ki - k * d.H;
            for (int r = 0; r < rows; r++)
                sum += dy[r * d.V + k] * a[(r + d.B) * d.H + i];
        }
        else if (e < d.ByOffset)
        {
            int i = e - d.BOffset;
            for (int r = 0; r < rows; r++)
                sum += dz[r * d.H + i];
        }
        else
        {
            int k = e - d.ByOffset;
            for (int r = 0; r < rows; r++)
                sum += dy[r * d.V + k];
        }
        g[e] = sum;
    }

    /// <summary>Keeps each name's final state (slot T) for the next step, when the state is carried.</summary>
    /// <param name="index">b·H + i.</param>
    /// <param name="d">Shapes.</param>
    /// <param name="a">Hidden states ((T+1), B, H).</param>
    /// <param name="carry">The carried state (B, H), overwritten.</param>
    public static void CarryState(Index1D index, RnnDims d, ArrayView<float> a, ArrayView<float> carry)
    {
        carry[index] = a[d.T * d.B * d.H + index];
    }
}
