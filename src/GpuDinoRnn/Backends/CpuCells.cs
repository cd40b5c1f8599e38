// The three cells' arithmetic for one row of units, forward and backward side by side, in float32
// on the host: the twin of StackKernels' per-unit code and of ReferenceStack's CellForward and
// CellBackward (the specification). Used by CpuStackBackend and by the sampler.
//
// A row's gate pre-activations are G blocks of `gs` floats (gs ≥ H; the padded backends put each
// gate at a multiple of the vector width), gate order as in PyTorch: gru [r; z; n], lstm [i; f; g; o].
using GpuDinoRnn.Kernels;

namespace GpuDinoRnn.Backends;

public static class CpuCells
{
    private static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));

    /// <summary>
    /// One step of units 0 … H−1. px = Wax·u + b and pa = Waa·h₋ for every gate; act receives the
    /// gates after their activation and an the GRU's Waa_n·h₋ (the backward pass needs both).
    /// rnn: h = tanh(px + pa). gru: r, z = σ(px + pa), n = tanh(px_n + r·pa_n), h = (1 − z)·n + z·h₋.
    /// lstm: i, f, o = σ(px + pa), g = tanh(px + pa), c = f·c₋ + i·g, h = o·tanh(c).
    /// </summary>
    public static void Forward(CellKind cell, int h, int gs, ReadOnlySpan<float> px, ReadOnlySpan<float> pa,
        ReadOnlySpan<float> hPrev, ReadOnlySpan<float> cPrev, Span<float> act, Span<float> an, Span<float> hNext, Span<float> cNext)
    {
        switch (cell)
        {
            case CellKind.Rnn:
                for (int i = 0; i < h; i++)
                    hNext[i] = act[i] = MathF.Tanh(px[i] + pa[i]);
                break;
            case CellKind.Gru:
                for (int i = 0; i < h; i++)
                {
                    float r = act[i] = Sigmoid(px[i] + pa[i]);
                    float z = act[gs + i] = Sigmoid(px[gs + i] + pa[gs + i]);
                    float n = act[2 * gs + i] = MathF.Tanh(px[2 * gs + i] + r * pa[2 * gs + i]);
                    an[i] = pa[2 * gs + i];
                    hNext[i] = (1f - z) * n + z * hPrev[i];
                }
                break;
            default:
                for (int i = 0; i < h; i++)
                {
                    float ig = act[i] = Sigmoid(px[i] + pa[i]);
                    float fg = act[gs + i] = Sigmoid(px[gs + i] + pa[gs + i]);
                    float gg = act[2 * gs + i] = MathF.Tanh(px[2 * gs + i] + pa[2 * gs + i]);
                    float og = act[3 * gs + i] = Sigmoid(px[3 * gs + i] + pa[3 * gs + i]);
                    float c = cNext[i] = fg * cPrev[i] + ig * gg;
                    hNext[i] = og * MathF.Tanh(c);
                }
                break;
        }
    }

    /// <summary>
    /// The mirror of Forward: from dh (and dc) of the new state, the gradients of px and pa (equal
    /// except for the GRU's candidate, whose pa is scaled by r), plus the parts of dh₋ and dc₋ that
    /// do not go through Waa: dhPrev is added to (the GRU's z·dh), dcPrev is overwritten (LSTM).
    /// </summary>
    public static void Backward(CellKind cell, int h, int gs, ReadOnlySpan<float> act, ReadOnlySpan<float> an,
        ReadOnlySpan<float> hPrev, ReadOnlySpan<float> cPrev, ReadOnlySpan<float> cNext, ReadOnlySpan<float> dh, ReadOnlySpan<float> dc,
        Span<float> dpx, Span<float> dpa, Span<float> dhPrev, Span<float> dcPrev)
    {
        switch (cell)
        {
            case CellKind.Rnn:
                for (int i = 0; i < h; i++)
                    dpx[i] = dpa[i] = dh[i] * (1f - act[i] * act[i]);
                break;
            case CellKind.Gru:
                for (int i = 0; i < h; i++)
                {
                    float r = act[i], z = act[gs + i], n = act[2 * gs + i];
                    float dn = dh[i] * (1f - z) * (1f - n * n);
                    dpx[2 * gs + i] = dn;
                    dpa[2 * gs + i] = dn * r;
                    dpx[i] = dpa[i] = dn * an[i] * r * (1f - r);
                    dpx[gs + i] = dpa[gs + i] = dh[i] * (hPrev[i] - n) * z * (1f - z);
                    if (!dhPrev.IsEmpty)
                        dhPrev[i] += dh[i] * z;
                }
                break;
            default:
                for (int i = 0; i < h; i++)
                {
                    float ig = act[i], fg = act[gs + i], gg = act[2 * gs + i], og = act[3 * gs + i];
                    float tc = MathF.Tanh(cNext[i]);
                    float dcTotal = dc[i] + dh[i] * og * (1f - tc * tc);
                    dpx[i] = dpa[i] = dcTotal * gg * ig * (1f - ig);
                    dpx[gs + i] = dpa[gs + i] = dcTotal * cPrev[i] * fg * (1f - fg);
                    dpx[2 * gs + i] = dpa[2 * gs + i] = dcTotal * ig * (1f - gg * gg);
                    dpx[3 * gs + i] = dpa[3 * gs + i] = dh[i] * tc * og * (1f - og);
                    if (!dcPrev.IsEmpty)
                        dcPrev[i] = dcTotal * fg;
                }
                break;
        }
    }
}
