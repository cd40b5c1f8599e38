// Dropout without a generator's state: whether a unit is kept is a hash of where it is (update,
// layer, time step, name, unit) and the run's seed, so the device and the host draw the same mask,
// and a resumed run draws what the uninterrupted one would have.
namespace GpuDinoRnn.Kernels;

public static class DropoutMask
{
    /// <summary>
    /// The factor unit i of layer input `layer` gets at (t, b) in update `update`: 0 with
    /// probability p, else 1/(1 − p). Input `layer` feeds layer `layer` (1 … L−1); input L feeds
    /// the output layer. p ≤ 0 keeps everything (factor 1).
    /// </summary>
    public static float Factor(float p, uint seed, uint update, int layer, int t, int b, int i) =>
        p <= 0f ? 1f : Factor(p, RowKey(seed, update, layer, t, b), i);

    /// <summary>The part of the hash shared by every unit of one row (layer, t, b): hoisted out of a row's loop.</summary>
    public static ulong RowKey(uint seed, uint update, int layer, int t, int b)
    {
        ulong key = Mix((ulong)seed << 32 ^ update);
        return Mix(key ^ ((ulong)(uint)layer << 40) ^ ((ulong)(uint)t << 20) ^ (uint)b);
    }

    /// <summary>Factor for unit i of the row whose RowKey is rowKey (p &gt; 0).</summary>
    public static float Factor(float p, ulong rowKey, int i)
    {
        ulong key = Mix(rowKey ^ (ulong)(uint)i);
        // 24 high bits as a uniform number in [0, 1).
        // (int) first: ulong → float would need float64, which some OpenCL devices lack.
        float u = (int)(key >> 40) * (1f / 16777216f);
        return u < p ? 0f : 1f / (1f - p);
    }

    /// <summary>SplitMix64's finaliser.</summary>
    private static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}

/// <summary>One step's dropout, as the kernels take it: the rate, the run's seed and the update number.</summary>
public readonly struct DropoutSettings
{
    public readonly float P;
    public readonly uint Seed;
    public readonly uint Update;

    public DropoutSettings(float p, uint seed, uint update)
    {
        P = p;
        Seed = seed;
        Update = update;
    }

    /// <summary>No dropout (evaluation, sampling).</summary>
    public static DropoutSettings None => new(0f, 0, 0);

    public float Factor(int layer, int t, int b, int i) => DropoutMask.Factor(P, Seed, Update, layer, t, b, i);

    /// <summary>DropoutMask.RowKey for this step: compute once per row, then Factor(rowKey, i) per unit (P &gt; 0).</summary>
    public ulong RowKey(int layer, int t, int b) => DropoutMask.RowKey(Seed, Update, layer, t, b);

    public float Factor(ulong rowKey, int i) => DropoutMask.Factor(P, rowKey, i);
}
