// The three cells' arithmetic for one row of units, forward and backward side by side, in float32
// on the host: the twin of StackKernels' per-unit code and of ReferenceStack's CellForward and
// CellBackward (the specification), over whole vectors of units and then a tail. Used by
// CpuStackBackend (Fast activations) and by the sampler (Precise: MathF lane by lane, so the
// sampler's names do not change).
//
// A row's gate pre-activations are G blocks of `gs` floats (gs ≥ H; the padded backends put each
// gate at a multiple of the vector width), gate order as in PyTorch: gru [r; z; n], lstm [i; f; g; o].
// Only units 0 … H−1 are written, so a padded row's padding stays as it was.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using GpuDinoRnn.Kernels;

namespace GpuDinoRnn.Backends;

/// <summary>tanh and the logistic σ, lane by lane.</summary>
internal interface IActivations
{
    static abstract TV Tanh<TV>(TV x) where TV : struct, ISimd<TV>;
    static abstract TV Sigmoid<TV>(TV x) where TV : struct, ISimd<TV>;
}

internal static unsafe class CpuCells
{
    /// <summary>MathF.Tanh and 1/(1 + MathF.Exp(−x)), one lane at a time.</summary>
    public readonly struct Precise : IActivations
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TV Tanh<TV>(TV x) where TV : struct, ISimd<TV> => EachLane(x, tanh: true);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TV Sigmoid<TV>(TV x) where TV : struct, ISimd<TV> => EachLane(x, tanh: false);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static float Apply(float v, bool tanh) => tanh ? MathF.Tanh(v) : 1f / (1f + MathF.Exp(-v));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static TV EachLane<TV>(TV x, bool tanh) where TV : struct, ISimd<TV>
        {
            if (typeof(TV) == typeof(Simd1)) // a row's tail, without a round trip through memory
            {
                float v = Apply(Unsafe.As<TV, float>(ref x), tanh);
                return Unsafe.As<float, TV>(ref v);
            }
            float* lanes = stackalloc float[TV.Count];
            TV.Store(x, lanes);
            for (int i = 0; i < TV.Count; i++)
                lanes[i] = Apply(lanes[i], tanh);
            return TV.Load(lanes);
        }
    }

    /// <summary>FastMath.Tanh, and σ(x) = ½·tanh(x/2) + ½ from it (within 3e-7 of the true value).</summary>
    public readonly struct Fast : IActivations
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TV Tanh<TV>(TV x) where TV : struct, ISimd<TV> => FastMath.Tanh(x);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TV Sigmoid<TV>(TV x) where TV : struct, ISimd<TV>
        {
            TV half = TV.Broadcast(0.5f);
            return TV.Fma(half, FastMath.Tanh(TV.Multiply(half, x)), half);
        }
    }

    /// <summary>
    /// One step of units 0 … H−1. px = Wax·u + b and pa = Waa·h₋ for every gate; act receives the
    /// gates after their activation and an the GRU's Waa_n·h₋ (the backward pass needs both).
    /// rnn: h = tanh(px + pa). gru: r, z = σ(px + pa), n = tanh(px_n + r·pa_n), h = (1 − z)·n + z·h₋.
    /// lstm: i, f, o = σ(px + pa), g = tanh(px + pa), c = f·c₋ + i·g, h = o·tanh(c).
    /// </summary>
    public static void Forward<TA>(CellKind cell, int h, int gs, ReadOnlySpan<float> px, ReadOnlySpan<float> pa,
        ReadOnlySpan<float> hPrev, ReadOnlySpan<float> cPrev, Span<float> act, Span<float> an, Span<float> hNext, Span<float> cNext)
        where TA : struct, IActivations
    {
        fixed (float* ppx = px, ppa = pa, phPrev = hPrev, pcPrev = cPrev, pact = act, pan = an, phNext = hNext, pcNext = cNext)
        {
            var rows = new Rows(ppx, ppa, phPrev, pcPrev, pact, pan, phNext, pcNext, gs);
            int i = 0;
            if (Vector512.IsHardwareAccelerated)
                i = Forward<Simd512, TA>(cell, rows, i, h);
            else if (Vector256.IsHardwareAccelerated)
                i = Forward<Simd256, TA>(cell, rows, i, h);
            else
                i = Forward<Simd128, TA>(cell, rows, i, h);
            Forward<Simd1, TA>(cell, rows, i, h);
        }
    }

    /// <summary>
    /// The mirror of Forward: from dh (and dc) of the new state, the gradients of px and pa (equal
    /// except for the GRU's candidate, whose pa is scaled by r), plus the parts of dh₋ and dc₋ that
    /// do not go through Waa: dhPrev is added to (the GRU's z·dh), dcPrev is overwritten (LSTM).
    /// </summary>
    public static void Backward<TA>(CellKind cell, int h, int gs, ReadOnlySpan<float> act, ReadOnlySpan<float> an,
        ReadOnlySpan<float> hPrev, ReadOnlySpan<float> cPrev, ReadOnlySpan<float> cNext, ReadOnlySpan<float> dh, ReadOnlySpan<float> dc,
        Span<float> dpx, Span<float> dpa, Span<float> dhPrev, Span<float> dcPrev)
        where TA : struct, IActivations
    {
        fixed (float* pact = act, pan = an, phPrev = hPrev, pcPrev = cPrev, pcNext = cNext, pdh = dh, pdc = dc,
               pdpx = dpx, pdpa = dpa, pdhPrev = dhPrev, pdcPrev = dcPrev)
        {
            var g = new Grads(pact, pan, phPrev, pcPrev, pcNext, pdh, pdc, pdpx, pdpa, dhPrev.IsEmpty ? null : pdhPrev,
                dcPrev.IsEmpty ? null : pdcPrev, gs);
            int i = 0;
            if (Vector512.IsHardwareAccelerated)
                i = Backward<Simd512, TA>(cell, g, i, h);
            else if (Vector256.IsHardwareAccelerated)
                i = Backward<Simd256, TA>(cell, g, i, h);
            else
                i = Backward<Simd128, TA>(cell, g, i, h);
            Backward<Simd1, TA>(cell, g, i, h);
        }
    }

    private readonly struct Rows(float* px, float* pa, float* hPrev, float* cPrev, float* act, float* an, float* hNext, float* cNext, int gs)
    {
        public readonly float* Px = px, Pa = pa, HPrev = hPrev, CPrev = cPrev, Act = act, An = an, HNext = hNext, CNext = cNext;
        public readonly int Gs = gs;
    }

    private readonly struct Grads(float* act, float* an, float* hPrev, float* cPrev, float* cNext, float* dh, float* dc,
        float* dpx, float* dpa, float* dhPrev, float* dcPrev, int gs)
    {
        public readonly float* Act = act, An = an, HPrev = hPrev, CPrev = cPrev, CNext = cNext, Dh = dh, Dc = dc;
        public readonly float* Dpx = dpx, Dpa = dpa, DhPrev = dhPrev, DcPrev = dcPrev;
        public readonly int Gs = gs;
    }

    /// <summary>Units i0 … while a whole TV fits below h; returns where it stopped.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Forward<TV, TA>(CellKind cell, Rows s, int i, int h) where TV : struct, ISimd<TV> where TA : struct, IActivations
    {
        int gs = s.Gs;
        TV one = TV.Broadcast(1f);
        for (; i + TV.Count <= h; i += TV.Count)
        {
            switch (cell)
            {
                case CellKind.Rnn:
                    {
                        TV a = TA.Tanh(TV.Add(TV.Load(s.Px + i), TV.Load(s.Pa + i)));
                        TV.Store(a, s.Act + i);
                        TV.Store(a, s.HNext + i);
                        break;
                    }
                case CellKind.Gru:
                    {
                        TV r = TA.Sigmoid(TV.Add(TV.Load(s.Px + i), TV.Load(s.Pa + i)));
                        TV z = TA.Sigmoid(TV.Add(TV.Load(s.Px + gs + i), TV.Load(s.Pa + gs + i)));
                        TV paN = TV.Load(s.Pa + 2 * gs + i);
                        TV n = TA.Tanh(TV.Add(TV.Load(s.Px + 2 * gs + i), TV.Multiply(r, paN)));
                        TV.Store(r, s.Act + i);
                        TV.Store(z, s.Act + gs + i);
                        TV.Store(n, s.Act + 2 * gs + i);
                        TV.Store(paN, s.An + i);
                        TV.Store(TV.Add(TV.Multiply(TV.Subtract(one, z), n), TV.Multiply(z, TV.Load(s.HPrev + i))), s.HNext + i);
                        break;
                    }
                default:
                    {
                        TV ig = TA.Sigmoid(TV.Add(TV.Load(s.Px + i), TV.Load(s.Pa + i)));
                        TV fg = TA.Sigmoid(TV.Add(TV.Load(s.Px + gs + i), TV.Load(s.Pa + gs + i)));
                        TV gg = TA.Tanh(TV.Add(TV.Load(s.Px + 2 * gs + i), TV.Load(s.Pa + 2 * gs + i)));
                        TV og = TA.Sigmoid(TV.Add(TV.Load(s.Px + 3 * gs + i), TV.Load(s.Pa + 3 * gs + i)));
                        TV.Store(ig, s.Act + i);
                        TV.Store(fg, s.Act + gs + i);
                        TV.Store(gg, s.Act + 2 * gs + i);
                        TV.Store(og, s.Act + 3 * gs + i);
                        TV c = TV.Add(TV.Multiply(fg, TV.Load(s.CPrev + i)), TV.Multiply(ig, gg));
                        TV.Store(c, s.CNext + i);
                        TV.Store(TV.Multiply(og, TA.Tanh(c)), s.HNext + i);
                        break;
                    }
            }
        }
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Backward<TV, TA>(CellKind cell, Grads s, int i, int h) where TV : struct, ISimd<TV> where TA : struct, IActivations
    {
        int gs = s.Gs;
        TV one = TV.Broadcast(1f);
        for (; i + TV.Count <= h; i += TV.Count)
        {
            TV dh = TV.Load(s.Dh + i);
            switch (cell)
            {
                case CellKind.Rnn:
                    {
                        TV a = TV.Load(s.Act + i);
                        TV d = TV.Multiply(dh, TV.Subtract(one, TV.Multiply(a, a)));
                        TV.Store(d, s.Dpx + i);
                        TV.Store(d, s.Dpa + i);
                        break;
                    }
                case CellKind.Gru:
                    {
                        TV r = TV.Load(s.Act + i), z = TV.Load(s.Act + gs + i), n = TV.Load(s.Act + 2 * gs + i);
                        TV dn = TV.Multiply(TV.Multiply(dh, TV.Subtract(one, z)), TV.Subtract(one, TV.Multiply(n, n)));
                        TV.Store(dn, s.Dpx + 2 * gs + i);
                        TV.Store(TV.Multiply(dn, r), s.Dpa + 2 * gs + i);
                        TV dr = TV.Multiply(TV.Multiply(TV.Multiply(dn, TV.Load(s.An + i)), r), TV.Subtract(one, r));
                        TV.Store(dr, s.Dpx + i);
                        TV.Store(dr, s.Dpa + i);
                        TV dz = TV.Multiply(TV.Multiply(TV.Multiply(dh, TV.Subtract(TV.Load(s.HPrev + i), n)), z), TV.Subtract(one, z));
                        TV.Store(dz, s.Dpx + gs + i);
                        TV.Store(dz, s.Dpa + gs + i);
                        if (s.DhPrev != null)
                            TV.Store(TV.Add(TV.Load(s.DhPrev + i), TV.Multiply(dh, z)), s.DhPrev + i);
                        break;
                    }
                default:
                    {
                        TV ig = TV.Load(s.Act + i), fg = TV.Load(s.Act + gs + i), gg = TV.Load(s.Act + 2 * gs + i), og = TV.Load(s.Act + 3 * gs + i);
                        TV tc = TA.Tanh(TV.Load(s.CNext + i));
                        TV dc = TV.Add(TV.Load(s.Dc + i), TV.Multiply(TV.Multiply(dh, og), TV.Subtract(one, TV.Multiply(tc, tc))));
                        TV di = TV.Multiply(TV.Multiply(TV.Multiply(dc, gg), ig), TV.Subtract(one, ig));
                        TV df = TV.Multiply(TV.Multiply(TV.Multiply(dc, TV.Load(s.CPrev + i)), fg), TV.Subtract(one, fg));
                        TV dg = TV.Multiply(TV.Multiply(dc, ig), TV.Subtract(one, TV.Multiply(gg, gg)));
                        TV dO = TV.Multiply(TV.Multiply(TV.Multiply(dh, tc), og), TV.Subtract(one, og));
                        TV.Store(di, s.Dpx + i);
                        TV.Store(di, s.Dpa + i);
                        TV.Store(df, s.Dpx + gs + i);
                        TV.Store(df, s.Dpa + gs + i);
                        TV.Store(dg, s.Dpx + 2 * gs + i);
                        TV.Store(dg, s.Dpa + 2 * gs + i);
                        TV.Store(dO, s.Dpx + 3 * gs + i);
                        TV.Store(dO, s.Dpa + 3 * gs + i);
                        if (s.DcPrev != null)
                            TV.Store(TV.Multiply(dc, fg), s.DcPrev + i);
                        break;
                    }
            }
        }
        return i;
    }
}
