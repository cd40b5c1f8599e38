// Drawing names on the device: one thread per name runs the model step by step, from START until
// it draws the end of name, with its own generator seeded by (seed, name index), so a name is the
// same whatever the batch size. Host twin: Sampler (its draw rules: temperature, top-k, top-p,
// prefix, minimum and maximum length); the cell arithmetic is CpuCells.Forward's.
using ILGPU;
using ILGPU.Algorithms;

namespace GpuDinoRnn.Kernels;

/// <summary>What to draw, as one struct.</summary>
public readonly struct SampleSettings
{
    public readonly float Temperature;
    public readonly int TopK;          // 0: every symbol
    public readonly float TopP;        // 1: every symbol
    public readonly int MinLength;     // the end of name is not drawn before this many symbols
    public readonly int MaxLength;     // names stop after this many symbols
    public readonly int PrefixLength;  // every name starts with these symbols (not drawn)
    public readonly uint Seed;
    public readonly long First;        // index of the launch's first name in the seed's stream

    public SampleSettings(float temperature, int topK, float topP, int minLength, int maxLength, int prefixLength, uint seed, long first)
    {
        Temperature = temperature;
        TopK = topK;
        TopP = topP;
        MinLength = minLength;
        MaxLength = maxLength;
        PrefixLength = prefixLength;
        Seed = seed;
        First = first;
    }

    /// <summary>Symbols a name can hold: the prefix may be longer than MaxLength.</summary>
    public int Capacity => MaxLength > PrefixLength ? MaxLength : PrefixLength;
}

public static class SampleKernels
{
    /// <summary>Floats of scratch per name: every layer's state, px and pa (G·H each), logits, probabilities and the kept ones (V each).</summary>
    public static int ScratchPerName(StackDims d) => d.Layers * d.StatePerLayer + 2 * d.GH + 3 * d.V;

    /// <summary>
    /// Name n of the launch (index First + n of the stream): ids[n·Capacity …] receives its
    /// symbols, lengths[n] their count, logProbability[n] ln P(drawn symbols and the end) at
    /// temperature 1, the prefix excluded.
    /// </summary>
    /// <param name="index">Name n of the launch.</param>
    /// <param name="d">The model's shapes (B and T unused).</param>
    /// <param name="p">Parameters (flat layout of StackDims).</param>
    /// <param name="s">What to draw.</param>
    /// <param name="prefix">The prefix's ids (at least one element, even when PrefixLength is 0).</param>
    /// <param name="scratch">ScratchPerName floats per name of the launch.</param>
    /// <param name="ids">(names, Capacity) symbols drawn.</param>
    /// <param name="lengths">(names) symbols per name.</param>
    /// <param name="logProbability">(names).</param>
    public static void SampleNames(
        Index1D index, StackDims d, ArrayView<float> p, SampleSettings s, ArrayView<int> prefix,
        ArrayView<float> scratch, ArrayView<int> ids, ArrayView<int> lengths, ArrayView<float> logProbability)
    {
        int n = index;
        int stateSize = d.Layers * d.StatePerLayer;
        var state = scratch.SubView((long)n * ScratchPerName(d), ScratchPerName(d));
        var px = state.SubView(stateSize, d.GH);
        var pa = state.SubView(stateSize + d.GH, d.GH);
        var logits = state.SubView(stateSize + 2 * d.GH, d.V);
        var probs = state.SubView(stateSize + 2 * d.GH + d.V, d.V);
        var kept = state.SubView(stateSize + 2 * d.GH + 2 * d.V, d.V);
        for (int k = 0; k < stateSize; k++)
            state[k] = 0f;
        // The host sampler's SplitMix64 stream for this name.
        ulong rng = ((ulong)s.Seed << 40) ^ (ulong)(s.First + n);
        int row = n * s.Capacity;
        int x = -1;
        int length = 0;
        float logP = 0f;
        for (int k = 0; k < s.PrefixLength; k++)
        {
            Step(d, p, x, state, px, pa, logits);
            x = prefix[k];
            ids[row + length++] = x;
        }
        while (true)
        {
            Step(d, p, x, state, px, pa, logits);
            int id = 0;
            if (length < s.MaxLength)
            {
                rng += 0x9E3779B97F4A7C15UL;
                ulong z = rng;
                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
                z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
                z ^= z >> 31;
                float u = (int)(z >> 40) * (1f / 16777216f); // via int: ulong → float needs float64
                id = Choose(d.V, s, logits, probs, kept, length < s.MinLength, u);
            }
            logP += LogSoftmax(d.V, logits, id);
            if (id == 0)
                break;
            ids[row + length++] = id;
            x = id;
        }
        lengths[n] = length;
        logProbability[n] = logP;
    }

    /// <summary>Every layer one step, bottom to top (no dropout); then logits = Wya·h_top + by.</summary>
    private static void Step(StackDims d, ArrayView<float> p, int x, ArrayView<float> state, ArrayView<float> px, ArrayView<float> pa, ArrayView<float> logits)
    {
        int h = d.H;
        for (int l = 0; l < d.Layers; l++)
        {
            int own = l * d.StatePerLayer;
            int below = (l - 1) * d.StatePerLayer;
            int inputs = d.InputsOf(l);
            for (int g = 0; g < d.GH; g++)
            {
                float zx = p[d.BOffset(l) + g];
                int wax = d.WaxOffset(l) + g * inputs;
                if (l == 0 && x >= 0)
                    zx += p[wax + x];
                if (l > 0)
                {
                    for (int j = 0; j < h; j++)
                        zx += p[wax + j] * state[below + j];
                }
                float za = 0f;
                int waa = d.WaaOffset(l) + g * h;
                for (int j = 0; j < h; j++)
                    za += p[waa + j] * state[own + j];
                px[g] = zx;
                pa[g] = za;
            }
            // Unit i reads only its own old state, so the state is updated in place.
            for (int i = 0; i < h; i++)
            {
                float hPrev = state[own + i];
                if (d.Cell == CellKind.Rnn)
                    state[own + i] = KernelMath.Tanh(px[i] + pa[i]);
                else if (d.Cell == CellKind.Gru)
                {
                    float r = Sigmoid(px[i] + pa[i]);
                    float z = Sigmoid(px[h + i] + pa[h + i]);
                    float nn = KernelMath.Tanh(px[2 * h + i] + r * pa[2 * h + i]);
                    state[own + i] = (1f - z) * nn + z * hPrev;
                }
                else
                {
                    float ig = Sigmoid(px[i] + pa[i]);
                    float fg = Sigmoid(px[h + i] + pa[h + i]);
                    float gg = KernelMath.Tanh(px[2 * h + i] + pa[2 * h + i]);
                    float og = Sigmoid(px[3 * h + i] + pa[3 * h + i]);
                    float c = fg * state[own + h + i] + ig * gg;
                    state[own + h + i] = c;
                    state[own + i] = og * KernelMath.Tanh(c);
                }
            }
        }
        int top = (d.Layers - 1) * d.StatePerLayer;
        for (int k = 0; k < d.V; k++)
        {
            float z = p[d.ByOffset + k];
            int wya = d.WyaOffset + k * h;
            for (int i = 0; i < h; i++)
                z += p[wya + i] * state[top + i];
            logits[k] = z;
        }
    }

    private static float Sigmoid(float x) => 1f / (1f + XMath.Exp(-x));

    /// <summary>ln softmax(logits)[k] at temperature 1.</summary>
    private static float LogSoftmax(int v, ArrayView<float> logits, int k)
    {
        float max = logits[0];
        for (int j = 1; j < v; j++)
            max = XMath.Max(max, logits[j]);
        float sum = 0f;
        for (int j = 0; j < v; j++)
            sum += XMath.Exp(logits[j] - max);
        return logits[k] - max - XMath.Log(sum);
    }

    /// <summary>
    /// As the host sampler: softmax(logits / T) with the end masked while the name is too short,
    /// top-k and top-p by rank (ties go to the lower id), then the first symbol whose cumulative
    /// probability exceeds u·total.
    /// </summary>
    private static int Choose(int v, SampleSettings s, ArrayView<float> logits, ArrayView<float> probs, ArrayView<float> kept, bool noEnd, float u)
    {
        float inv = 1f / s.Temperature;
        float max = float.NegativeInfinity;
        for (int k = noEnd ? 1 : 0; k < v; k++)
            max = XMath.Max(max, logits[k] * inv);
        float sum = 0f;
        for (int k = 0; k < v; k++)
        {
            float e = noEnd && k == 0 ? 0f : XMath.Exp(logits[k] * inv - max);
            probs[k] = e;
            sum += e;
        }
        for (int k = 0; k < v; k++)
            probs[k] /= sum;
        bool filter = s.TopK > 0 || s.TopP < 1f;
        float total = 0f;
        for (int k = 0; k < v; k++)
        {
            float q = probs[k];
            if (filter)
            {
                // The rank of k, and the probability of every symbol ranked above it.
                int rank = 0;
                float above = 0f;
                for (int j = 0; j < v; j++)
                {
                    if (probs[j] > q || (probs[j] == q && j < k))
                    {
                        rank++;
                        above += probs[j];
                    }
                }
                if (!((s.TopK <= 0 || rank < s.TopK) && (rank == 0 || above < s.TopP)))
                    q = 0f;
            }
            kept[k] = q;
            total += q;
        }
        float c = 0f;
        int last = 0;
        for (int k = 0; k < v; k++)
        {
            c += kept[k];
            if (kept[k] > 0f)
                last = k;
            if (u * total < c)
                return k;
        }
        return last;
    }
}
