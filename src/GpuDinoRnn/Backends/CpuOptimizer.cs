// The CPU twin of UpdateKernels.Update: clipping and every update rule, element by element,
// in the same order of operations as the kernel.
using System.Numerics.Tensors;
using GpuDinoRnn.Kernels;

namespace GpuDinoRnn.Backends;

public static class CpuOptimizer
{
    [ThreadStatic]
    private static float[]? _scratch;

    /// <summary>Room for the clipped gradient; grows once, so the step allocates nothing.</summary>
    private static Span<float> Scratch(int length)
    {
        if (_scratch is null || _scratch.Length < length)
            _scratch = new float[length];
        return _scratch.AsSpan(0, length);
    }

    /// <param name="sumSquares">Σ g², for norm clipping and the NaN guard: a non-finite sum skips the step.</param>
    public static void Update(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, in OptimizerSettings s, float sumSquares)
    {
        if (!(sumSquares <= float.MaxValue))
            return; // NaN or infinite gradient: the weights stay as they were
        float scale = 1f;
        if (s.Clip > 0 && s.NormMode != 0)
        {
            float norm = MathF.Sqrt(sumSquares);
            if (norm > s.Clip)
                scale = s.Clip / norm;
        }
        if (s.Kind == OptimizerKind.Sgd)
        {
            // The plain rule vectorised (the course runs it 35,000 times): the same operations,
            // in the same order, as the loop below.
            var clipped = Scratch(g.Length);
            if (s.Clip > 0 && s.NormMode == 0)
                TensorPrimitives.Clamp(g, -s.Clip, s.Clip, clipped);
            else if (scale != 1f)
                TensorPrimitives.Multiply(g, scale, clipped);
            else
                g.CopyTo(clipped);
            TensorPrimitives.Multiply(clipped, s.Lr, clipped);
            TensorPrimitives.Subtract(p, clipped, p);
            return;
        }
        for (int e = 0; e < p.Length; e++)
        {
            float ge = g[e];
            if (s.Clip > 0)
                ge = s.NormMode != 0 ? (scale == 1f ? ge : ge * scale) : Math.Clamp(ge, -s.Clip, s.Clip);
            float pe = p[e];
            switch (s.Kind)
            {
                case OptimizerKind.Momentum:
                    m[e] = s.Momentum * m[e] + ge;
                    pe -= s.Lr * m[e];
                    break;
                case OptimizerKind.Adam:
                case OptimizerKind.AdamW:
                    if (s.Kind == OptimizerKind.AdamW)
                        pe -= s.Lr * s.WeightDecay * pe;
                    m[e] = s.Beta1 * m[e] + (1f - s.Beta1) * ge;
                    v[e] = s.Beta2 * v[e] + (1f - s.Beta2) * ge * ge;
                    pe -= s.Lr * (m[e] / s.Bias1) / (MathF.Sqrt(v[e] / s.Bias2) + s.Eps);
                    break;
                case OptimizerKind.Adagrad:
                    v[e] += ge * ge;
                    pe -= s.Lr * ge / (MathF.Sqrt(v[e]) + s.Eps);
                    break;
                case OptimizerKind.RmsProp:
                    v[e] = s.Beta2 * v[e] + (1f - s.Beta2) * ge * ge;
                    pe -= s.Lr * ge / (MathF.Sqrt(v[e]) + s.Eps);
                    break;
                default:
                    pe -= s.Lr * ge;
                    break;
            }
            p[e] = pe;
        }
    }
}
