// One mini-batch, time-major and padded to the longest name: what a backend's Step consumes.
namespace GpuDinoRnn.Data;

/// <summary>
/// B names, T = longest name + 1 steps. Row r = t·B + b. For name c1…cn the inputs are
/// [START, c1…cn] and the targets [c1…cn, '\n']; START is -1 (the zero vector) and padding
/// has target -1. Names are sorted by length, longest first, so at step t the names still
/// running are a prefix 0…Active(t)−1.
/// </summary>
public sealed class Batch
{
    public const int Start = -1;
    public const int Pad = -1;

    private Batch(int b, int t, int[] x, int[] y, int[] lengths)
    {
        B = b;
        T = t;
        X = x;
        Y = y;
        Lengths = lengths;
        Chars = lengths.Sum();
    }

    public int B { get; }
    public int T { get; }
    /// <summary>Input ids (T, B).</summary>
    public int[] X { get; }
    /// <summary>Target ids (T, B); -1 is padding.</summary>
    public int[] Y { get; }
    /// <summary>Steps of each name (its length + 1), non-increasing.</summary>
    public int[] Lengths { get; }
    /// <summary>Predicted characters of real names (padding excluded).</summary>
    public int Chars { get; }

    /// <summary>Names still running at step t.</summary>
    public int Active(int t)
    {
        int n = 0;
        while (n < B && Lengths[n] > t)
            n++;
        return n;
    }

    /// <summary>
    /// Continuous text: B streams of the same length T; stream b reads inputs[b] and predicts
    /// targets[b] (the same text one symbol later). No START, no padding.
    /// </summary>
    public static Batch FromStreams(IReadOnlyList<int[]> inputs, IReadOnlyList<int[]> targets)
    {
        int b = inputs.Count, t = inputs[0].Length;
        var x = new int[t * b];
        var y = new int[t * b];
        for (int n = 0; n < b; n++)
        {
            if (inputs[n].Length != t || targets[n].Length != t)
                throw new ArgumentException("every stream of a batch has the same length");
            for (int s = 0; s < t; s++)
            {
                x[s * b + n] = inputs[n][s];
                y[s * b + n] = targets[n][s];
            }
        }
        return new Batch(b, t, x, y, Enumerable.Repeat(t, b).ToArray());
    }

    public static Batch FromEncoded(IReadOnlyList<int[]> names)
    {
        if (names.Count == 0)
            throw new ArgumentException("a batch needs at least one name");
        var sorted = names.OrderByDescending(n => n.Length).ToArray(); // stable: ties keep their order
        int b = sorted.Length;
        int t = sorted[0].Length + 1;
        var x = new int[t * b];
        var y = new int[t * b];
        Array.Fill(y, Pad);
        var lengths = new int[b];
        for (int n = 0; n < b; n++)
        {
            var ids = sorted[n];
            lengths[n] = ids.Length + 1;
            for (int s = 0; s <= ids.Length; s++)
            {
                x[s * b + n] = s == 0 ? Start : ids[s - 1];
                y[s * b + n] = s < ids.Length ? ids[s] : 0;
            }
        }
        return new Batch(b, t, x, y, lengths);
    }
}
