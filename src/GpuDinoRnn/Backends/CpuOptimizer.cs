// The CPU twin of UpdateKernels.Update: clipping and every update rule, element by element, in
// the same order of operations as the kernel. One generic body runs over whole vectors
// (Vector512, 256 or 128) and over the tail one float at a time (Simd1), so both give the same
// bits; there is no fused multiply-add, as in the kernel's scalar code.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using GpuDinoRnn.Kernels;

namespace GpuDinoRnn.Backends;

public static unsafe class CpuOptimizer
{
    /// <param name="sumSquares">Σ g², for norm clipping and the NaN guard: a non-finite sum skips the step.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Update(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, in OptimizerSettings s, float sumSquares)
    {
        if (!(sumSquares <= float.MaxValue))
            return; // NaN or infinite gradient: the weights stay as they were
        if (g.Length != p.Length || m.Length < p.Length || v.Length < p.Length)
            throw new ArgumentException("the gradient and the moments must cover the parameters");
        float scale = 1f;
        if (s.Clip > 0 && s.NormMode != 0)
        {
            float norm = MathF.Sqrt(sumSquares);
            if (norm > s.Clip)
                scale = s.Clip / norm;
        }
        int n = p.Length, done;
        fixed (float* pp = p, pg = g, pm = m, pv = v)
        {
            if (Vector512.IsHardwareAccelerated)
                done = Apply<Simd512>(pp, pg, pm, pv, 0, n, s, scale);
            else if (Vector256.IsHardwareAccelerated)
                done = Apply<Simd256>(pp, pg, pm, pv, 0, n, s, scale);
            else
                done = Apply<Simd128>(pp, pg, pm, pv, 0, n, s, scale);
            Apply<Simd1>(pp, pg, pm, pv, done, n, s, scale);
        }
    }

    /// <summary>The rule over the whole vectors from e0 on; returns where it stopped.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Apply<TV>(float* p, float* g, float* m, float* v, int e0, int e1, in OptimizerSettings s, float scale)
        where TV : struct, ISimd<TV>
    {
        bool valueClip = s.Clip > 0 && s.NormMode == 0, scaled = s.Clip > 0 && s.NormMode != 0 && scale != 1f;
        var kind = s.Kind; // a local, so the loop's switch does not reload it
        TV hi = TV.Broadcast(s.Clip), lo = TV.Broadcast(-s.Clip), by = TV.Broadcast(scale), lr = TV.Broadcast(s.Lr);
        TV momentum = TV.Broadcast(s.Momentum), beta1 = TV.Broadcast(s.Beta1), beta2 = TV.Broadcast(s.Beta2);
        TV rest1 = TV.Broadcast(1f - s.Beta1), rest2 = TV.Broadcast(1f - s.Beta2), eps = TV.Broadcast(s.Eps);
        TV bias1 = TV.Broadcast(s.Bias1), bias2 = TV.Broadcast(s.Bias2), decay = TV.Broadcast(s.Lr * s.WeightDecay);
        int e = e0;
        if (kind == OptimizerKind.Sgd)
        {
            // The course's rule in a loop of its own: the switch below costs more than the rule.
            for (; e + TV.Count <= e1; e += TV.Count)
                TV.Store(TV.Subtract(TV.Load(p + e), TV.Multiply(lr, Clipped(TV.Load(g + e), valueClip, lo, hi, scaled, by))), p + e);
            return e;
        }
        for (; e + TV.Count <= e1; e += TV.Count)
        {
            TV ge = Clipped(TV.Load(g + e), valueClip, lo, hi, scaled, by);
            TV pe = TV.Load(p + e);
            switch (kind)
            {
                case OptimizerKind.Momentum:
                    {
                        TV me = TV.Add(TV.Multiply(momentum, TV.Load(m + e)), ge);
                        TV.Store(me, m + e);
                        pe = TV.Subtract(pe, TV.Multiply(lr, me));
                        break;
                    }
                case OptimizerKind.Adam:
                case OptimizerKind.AdamW:
                    {
                        if (kind == OptimizerKind.AdamW)
                            pe = TV.Subtract(pe, TV.Multiply(decay, pe));
                        TV me = TV.Add(TV.Multiply(beta1, TV.Load(m + e)), TV.Multiply(rest1, ge));
                        TV ve = TV.Add(TV.Multiply(beta2, TV.Load(v + e)), TV.Multiply(TV.Multiply(rest2, ge), ge));
                        TV.Store(me, m + e);
                        TV.Store(ve, v + e);
                        TV step = TV.Divide(TV.Multiply(lr, TV.Divide(me, bias1)), TV.Add(TV.Sqrt(TV.Divide(ve, bias2)), eps));
                        pe = TV.Subtract(pe, step);
                        break;
                    }
                case OptimizerKind.Adagrad:
                    {
                        TV ve = TV.Add(TV.Load(v + e), TV.Multiply(ge, ge));
                        TV.Store(ve, v + e);
                        pe = TV.Subtract(pe, TV.Divide(TV.Multiply(lr, ge), TV.Add(TV.Sqrt(ve), eps)));
                        break;
                    }
                case OptimizerKind.RmsProp:
                    {
                        TV ve = TV.Add(TV.Multiply(beta2, TV.Load(v + e)), TV.Multiply(TV.Multiply(rest2, ge), ge));
                        TV.Store(ve, v + e);
                        pe = TV.Subtract(pe, TV.Divide(TV.Multiply(lr, ge), TV.Add(TV.Sqrt(ve), eps)));
                        break;
                    }
                default:
                    pe = TV.Subtract(pe, TV.Multiply(lr, ge));
                    break;
            }
            TV.Store(pe, p + e);
        }
        return e;
    }

    /// <summary>
    /// The gradient clipped: to [lo, hi] element by element, or scaled by the norm's factor. Only
    /// a finite gradient gets here (Update skips the step otherwise), so ClampFinite is exact.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV Clipped<TV>(TV g, bool valueClip, TV lo, TV hi, bool scaled, TV by) where TV : struct, ISimd<TV> =>
        valueClip ? TV.ClampFinite(g, lo, hi) : scaled ? TV.Multiply(g, by) : g;
}
