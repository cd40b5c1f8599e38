// The vanilla tanh cell on the device: the forward and backward passes, side by side, each one
// launch for all time steps (a thread group per name steps through time with barriers), then
// the weight gradients, which do not depend on the previous step and so are summed over all
// rows at once. CPU twin: CpuBackend (ForwardStep/BackwardStep are the per-step bodies of these
// passes); spec: tests/Reference/ReferenceRnn.
using ILGPU;
using ILGPU.Algorithms;

namespace GpuDinoRnn.Kernels;

public static class RnnKernels
{
    /// <summary>
    /// The whole forward pass in one launch: one thread group per name walks all T steps,
    /// a_{t+1} = tanh(Wax·x_t + Waa·a_t + b), with a group barrier between steps (a step needs
    /// all of the previous state). The pass reads Waa transposed, so that the threads of a warp
    /// (consecutive units i) read consecutive floats at each j: from shared memory when it fits
    /// (useShared = 1; row-major, an H that is a multiple of 32 would put all 32 reads in one
    /// bank), else from waaT (TransposeWaa's; row-major, each read would be a cache line of its own).
    /// A is ((T+1), B, H): slot 0 holds the initial state. A padded step (target &lt; 0) copies
    /// the state forward, so slot T holds each name's final state.
    /// Launch: grid B groups; any group size (each thread takes units i, i + group size, …);
    /// dynamic shared memory of H·H floats when useShared.
    /// </summary>
    /// <param name="d">Shapes.</param>
    /// <param name="p">Parameters (flat layout of <see cref="RnnDims"/>).</param>
    /// <param name="x">Input ids (T, B); -1 is START (the zero vector).</param>
    /// <param name="y">Target ids (T, B); -1 marks padding.</param>
    /// <param name="a">Hidden states ((T+1), B, H).</param>
    /// <param name="waaT">Waa transposed (H, H), read when useShared = 0.</param>
    /// <param name="useShared">1: copy Waa, transposed, into shared memory first.</param>
    public static void ForwardPass(
        RnnDims d, ArrayView<float> p, ArrayView<int> x, ArrayView<int> y, ArrayView<float> a, ArrayView<float> waaT, int useShared)
    {
        int b = Grid.IdxX;
        int tid = Group.IdxX;
        int size = Group.DimX;
        var waa = useShared != 0 ? SharedWaa(d, p, transposed: true) : waaT; // Waa[i][j] at waa[j·H + i]
        for (int t = 0; t < d.T; t++)
        {
            int r = t * d.B + b;
            int prev = r * d.H;
            int next = (r + d.B) * d.H;
            bool padded = y[r] < 0;
            int xr = x[r];
            for (int i = tid; i < d.H; i += size)
            {
                if (padded)
                {
                    a[next + i] = a[prev + i];
                    continue;
                }
                float z = p[d.BOffset + i];
                if (xr >= 0)
                    z += p[d.WaxOffset + i * d.V + xr];
                for (int j = 0; j < d.H; j++)
                    z += waa[j * d.H + i] * a[prev + j];
                a[next + i] = KernelMath.Tanh(z);
            }
            Group.Barrier();
        }
    }

    /// <summary>waaT[j·H + i] = Waa[i][j]: the forward pass's copy when Waa does not fit in shared memory.</summary>
    /// <param name="index">j·H + i.</param>
    /// <param name="d">Shapes.</param>
    /// <param name="p">Parameters.</param>
    /// <param name="waaT">Waa transposed (H, H), overwritten.</param>
    public static void TransposeWaa(Index1D index, RnnDims d, ArrayView<float> p, ArrayView<float> waaT)
    {
        int j = index / d.H, i = index - j * d.H;
        waaT[index] = p[d.WaaOffset + i * d.H + j];
    }

    /// <summary>
    /// Waa (H, H) copied by the whole group into the dynamic shared memory, transposed (element
    /// (i, j) at j·H + i) or as it is.
    /// </summary>
    private static ArrayView<float> SharedWaa(RnnDims d, ArrayView<float> p, bool transposed)
    {
        var waa = SharedMemory.GetDynamic<float>();
        for (int k = Group.IdxX; k < d.H * d.H; k += Group.DimX)
        {
            int i = k / d.H, j = k - i * d.H;
            waa[transposed ? j * d.H + i : k] = p[d.WaaOffset + k];
        }
        Group.Barrier();
        return waa;
    }

    /// <summary>
    /// Backpropagation through time in one launch, the mirror of <see cref="ForwardPass"/>: one
    /// group per name walks t = T−1 … 0, dz_t = (Wyaᵀ·dy_t + Waaᵀ·dz_{t+1}) ⊙ (1 − a_{t+1}²), with
    /// a barrier between steps. dz of a padded step is 0, which also stops the carry into
    /// earlier steps. Same launch shape and shared memory as ForwardPass.
    /// </summary>
    /// <param name="d">Shapes.</param>
    /// <param name="p">Parameters.</param>
    /// <param name="y">Target ids (T, B); -1 marks padding.</param>
    /// <param name="a">Hidden states ((T+1), B, H).</param>
    /// <param name="dy">Gradient of the loss with respect to the logits (T, B, V).</param>
    /// <param name="dz">Gradient with respect to the pre-activation (T, B, H), overwritten.</param>
    /// <param name="useShared">1: copy Waa into shared memory first.</param>
    public static void BackwardPass(
        RnnDims d, ArrayView<float> p, ArrayView<int> y, ArrayView<float> a,
        ArrayView<float> dy, ArrayView<float> dz, int useShared)
    {
        int b = Grid.IdxX;
        int tid = Group.IdxX;
        int size = Group.DimX;
        // Read as waa[j·H + i]: consecutive for consecutive i, row-major as in the parameters.
        var waa = useShared != 0 ? SharedWaa(d, p, transposed: false) : p.SubView(d.WaaOffset, d.H * d.H);
        for (int t = d.T - 1; t >= 0; t--)
        {
            int r = t * d.B + b;
            bool padded = y[r] < 0;
            for (int i = tid; i < d.H; i += size)
            {
                if (padded)
                {
                    dz[r * d.H + i] = 0f;
                    continue;
                }
                float da = 0f;
                int dyRow = r * d.V;
                for (int k = 0; k < d.V; k++)
                    da += p[d.WyaOffset + k * d.H + i] * dy[dyRow + k];
                if (t + 1 < d.T)
                {
                    int dzNext = (r + d.B) * d.H;
                    for (int j = 0; j < d.H; j++)
                        da += waa[j * d.H + i] * dz[dzNext + j];
                }
                float an = a[(r + d.B) * d.H + i];
                dz[r * d.H + i] = da * (1f - an * an);
            }
            Group.Barrier();
        }
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
