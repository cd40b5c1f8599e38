// All weights in one contiguous float buffer with named views, in checkpoint order (StackDims):
// for the course's model Wax (H,V), Waa (H,H), Wya (V,H), b (H), by (V); for any other, each
// layer's Wax, Waa, b, then Wya, by. Gradients and optimizer moments use the same layout.
using GpuDinoRnn.Kernels;

namespace GpuDinoRnn.Model;

public sealed class Parameters
{
    /// <summary>The course model's tensor names in buffer order, as in the checkpoint.</summary>
    public static readonly string[] Names = ["Wax", "Waa", "Wya", "b", "by"];

    /// <summary>
    /// A model's tensor names in buffer order. One layer: Wax, Waa, b (gate blocks stacked in rows),
    /// Wya, by. Several layers: layer k's are prefixed "l{k}." (l0.Wax, l0.Waa, l0.b, l1.Wax, …).
    /// </summary>
    public static string[] NamesOf(ModelShape shape)
    {
        if (shape.IsVanilla)
            return Names;
        var names = new List<string>();
        for (int l = 0; l < shape.Layers; l++)
            names.AddRange(new[] { "Wax", "Waa", "b" }.Select(n => LayerPrefix(shape, l) + n));
        names.Add("Wya");
        names.Add("by");
        return [.. names];
    }

    private static string LayerPrefix(ModelShape shape, int layer) => shape.Layers == 1 ? "" : $"l{layer}.";

    public Parameters(ModelShape shape)
    {
        Shape = shape;
        Data = new float[shape.ParameterCount];
    }

    public ModelShape Shape { get; }
    public float[] Data { get; }

    // The one-layer views; deeper models name their layers' tensors "l{k}.Wax" and so on.
    public Span<float> Wax => Slice("Wax");
    public Span<float> Waa => Slice("Waa");
    public Span<float> Wya => Slice("Wya");
    public Span<float> B => Slice("b");
    public Span<float> By => Slice("by");

    /// <summary>Offset and row-major shape of a named tensor in the flat buffer.</summary>
    public static (int Offset, int[] Dims) Layout(ModelShape shape, string name)
    {
        StackDims d = shape.Stack(1, 1);
        if (name == "Wya")
            return (d.WyaOffset, [d.V, d.H]);
        if (name == "by")
            return (d.ByOffset, [d.V]);
        for (int l = 0; l < d.Layers; l++)
        {
            string prefix = LayerPrefix(shape, l);
            if (name == prefix + "Wax")
                return (d.WaxOffset(l), [d.GH, d.InputsOf(l)]);
            if (name == prefix + "Waa")
                return (d.WaaOffset(l), [d.GH, d.H]);
            if (name == prefix + "b")
                return (d.BOffset(l), [d.GH]);
        }
        throw new ArgumentException($"no tensor named {name}");
    }

    public Span<float> Slice(string name)
    {
        var (offset, dims) = Layout(Shape, name);
        return Data.AsSpan(offset, dims.Aggregate(1, (a, b) => a * b));
    }

    public Parameters Clone()
    {
        var copy = new Parameters(Shape);
        Data.CopyTo(copy.Data, 0);
        return copy;
    }

    /// <summary>
    /// Weights ~ N(0,1)·scale, biases 0. The course uses scale 0.01 for all three matrices;
    /// the default scales each matrix by 1/√(fan-in) (Xavier), so training starts faster.
    /// </summary>
    public static Parameters Initialize(ModelShape shape, InitScheme scheme, int seed)
    {
        var p = new Parameters(shape);
        if (scheme == InitScheme.Numpy)
        {
            // The notebook: np.random.seed(1); Wax, Waa, Wya = randn(...)·0.01 in that order.
            var np = new Training.NumpyRandom(1);
            var buf = new double[Math.Max(shape.H * shape.V, shape.H * shape.H)];
            foreach (var name in new[] { "Wax", "Waa", "Wya" })
            {
                var dst = p.Slice(name);
                np.Randn(buf.AsSpan(0, dst.Length));
                for (int i = 0; i < dst.Length; i++)
                    dst[i] = (float)(buf[i] * 0.01);
            }
            return p;
        }
        var rng = new Random(seed);
        bool small = scheme == InitScheme.Small;
        double hidden = small ? 0.01 : 1.0 / Math.Sqrt(shape.H);
        for (int l = 0; l < shape.Layers; l++)
        {
            string prefix = LayerPrefix(shape, l);
            FillNormal(p.Slice(prefix + "Wax"), rng, small ? 0.01 : l == 0 ? 1.0 : hidden); // one-hot input: fan-in 1
            FillNormal(p.Slice(prefix + "Waa"), rng, hidden);
        }
        FillNormal(p.Wya, rng, hidden);
        if (shape.Cell == CellKind.Lstm)
        {
            // Forget-gate biases of 1: a new LSTM remembers by default (Jozefowicz et al., 2015).
            for (int l = 0; l < shape.Layers; l++)
                p.Slice(LayerPrefix(shape, l) + "b").Slice(shape.H, shape.H).Fill(1f);
        }
        return p;
    }

    private static void FillNormal(Span<float> dst, Random rng, double scale)
    {
        for (int i = 0; i < dst.Length; i++)
        {
            // Box–Muller; 1 − NextDouble() is in (0, 1], so the log is finite.
            double u1 = 1.0 - rng.NextDouble();
            double u2 = rng.NextDouble();
            dst[i] = (float)(scale * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
    }
}

public enum InitScheme
{
    /// <summary>N(0,1)/√fan-in per matrix, seeded (the default).</summary>
    Xavier,
    /// <summary>0.01·N(0,1), seeded: the course's scale with this program's generator.</summary>
    Small,
    /// <summary>0.01·N(0,1) from numpy's legacy generator seeded with 1: the course's exact numbers.</summary>
    Numpy,
}
