// Gradient clipping fused with the optimizer update. Norm clipping needs the global L2 norm:
// a fixed number of partial sums, each added in a fixed order, so no atomics and the same
// result on every run. CPU twin: CpuBackend.ClipAndUpdate.
using ILGPU;
using ILGPU.Algorithms;

namespace GpuDinoRnn.Kernels;

public static class UpdateKernels
{
    /// <summary>How many partial sums of squares the norm is split into.</summary>
    public const int NormPartials = 256;

    /// <summary>partial[s] = Σ g[e]² over e = s, s + NormPartials, … (one thread per partial).</summary>
    /// <param name="index">Partial s.</param>
    /// <param name="count">Gradient elements.</param>
    /// <param name="g">Gradients.</param>
    /// <param name="partial">NormPartials sums, overwritten.</param>
    public static void SquaredNormPartials(Index1D index, int count, ArrayView<float> g, ArrayView<float> partial)
    {
        float sum = 0f;
        for (int e = index; e < count; e += NormPartials)
            sum += g[e] * g[e];
        partial[index] = sum;
    }

    /// <summary>
    /// SGD with clipping: p −= lr · clip(g). Value mode (<paramref name="normMode"/> = 0) clamps
    /// each element to [−clip, clip]; norm mode scales g by min(1, clip / ‖g‖₂), each thread
    /// summing the partials in the same order.
    /// </summary>
    /// <param name="index">Parameter element.</param>
    /// <param name="p">Parameters, updated in place.</param>
    /// <param name="g">Gradients.</param>
    /// <param name="partial">Partial sums of squares (norm mode only).</param>
    /// <param name="lr">Learning rate.</param>
    /// <param name="clip">Clip threshold; ≤ 0 disables clipping.</param>
    /// <param name="normMode">1 for global-norm clipping, 0 for element-wise.</param>
    public static void SgdUpdate(
        Index1D index, ArrayView<float> p, ArrayView<float> g, ArrayView<float> partial,
        float lr, float clip, int normMode)
    {
        float ge = g[index];
        if (clip > 0f)
        {
            if (normMode != 0)
            {
                float sq = 0f;
                for (int s = 0; s < NormPartials; s++)
                    sq += partial[s];
                float norm = XMath.Sqrt(sq);
                if (norm > clip)
                    ge *= clip / norm;
            }
            else
            {
                ge = XMath.Clamp(ge, -clip, clip);
            }
        }
        p[index] -= lr * ge;
    }
}
