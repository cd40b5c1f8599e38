// Gradient clipping fused with the optimizer update. The global L2 norm (for norm clipping, the
// NaN guard and the logged gradient norm) is a fixed number of partial sums, each added in a
// fixed order, so no atomics and the same result on every run. CPU twin: CpuOptimizer.
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
    /// Clipping and the optimizer update, fused: one thread per parameter. The partial sums of
    /// squares give the global norm for norm clipping. The step's recorded loss (BatchLoss runs
    /// first, and records a non-finite gradient as NaN) guards the update: when it is not finite
    /// the step is skipped and the weights stay as they were. m and v are the optimizer's moments
    /// (momentum velocity / Adam's first and second moments / Adagrad's and RMSprop's
    /// squared-gradient averages in v).
    /// </summary>
    /// <param name="index">Parameter element.</param>
    /// <param name="p">Parameters, updated in place.</param>
    /// <param name="g">Gradients.</param>
    /// <param name="m">First moment (momentum, Adam), updated in place.</param>
    /// <param name="v">Second moment (Adam, Adagrad, RMSprop), updated in place.</param>
    /// <param name="partial">NormPartials partial sums of squares of g.</param>
    /// <param name="history">The per-step losses; history[slot] is this step's.</param>
    /// <param name="slot">This step's place in the history.</param>
    /// <param name="s">This step's settings.</param>
    public static void Update(
        Index1D index, ArrayView<float> p, ArrayView<float> g, ArrayView<float> m, ArrayView<float> v,
        ArrayView<float> partial, ArrayView<float> history, int slot, OptimizerSettings s)
    {
        if (!(XMath.Abs(history[slot]) <= float.MaxValue))
            return; // a NaN or infinite loss or gradient: skip the step
        float sq = 0f;
        for (int k = 0; k < NormPartials; k++)
            sq += partial[k];
        float ge = g[index];
        if (s.Clip > 0f)
        {
            if (s.NormMode != 0)
            {
                float norm = XMath.Sqrt(sq);
                if (norm > s.Clip)
                    ge *= s.Clip / norm;
            }
            else
            {
                ge = XMath.Clamp(ge, -s.Clip, s.Clip);
            }
        }
        float pe = p[index];
        switch (s.Kind)
        {
            case OptimizerKind.Momentum:
                {
                    float me = s.Momentum * m[index] + ge;
                    m[index] = me;
                    pe -= s.Lr * me;
                    break;
                }
            case OptimizerKind.Adam:
            case OptimizerKind.AdamW:
                {
                    if (s.Kind == OptimizerKind.AdamW)
                        pe -= s.Lr * s.WeightDecay * pe;
                    float me = s.Beta1 * m[index] + (1f - s.Beta1) * ge;
                    float ve = s.Beta2 * v[index] + (1f - s.Beta2) * ge * ge;
                    m[index] = me;
                    v[index] = ve;
                    pe -= s.Lr * (me / s.Bias1) / (XMath.Sqrt(ve / s.Bias2) + s.Eps);
                    break;
                }
            case OptimizerKind.Adagrad:
                {
                    float ve = v[index] + ge * ge;
                    v[index] = ve;
                    pe -= s.Lr * ge / (XMath.Sqrt(ve) + s.Eps);
                    break;
                }
            case OptimizerKind.RmsProp:
                {
                    float ve = s.Beta2 * v[index] + (1f - s.Beta2) * ge * ge;
                    v[index] = ve;
                    pe -= s.Lr * ge / (XMath.Sqrt(ve) + s.Eps);
                    break;
                }
            default:
                pe -= s.Lr * ge;
                break;
        }
        p[index] = pe;
    }
}
