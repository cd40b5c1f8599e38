// All weights in one contiguous float buffer with named views, in checkpoint order:
// Wax (H,V), Waa (H,H), Wya (V,H), b (H), by (V). Gradients use the same layout.
using GpuDinoRnn.Kernels;

namespace GpuDinoRnn.Model;

public sealed class Parameters
{
    /// <summary>Tensor names in buffer order, as in the checkpoint.</summary>
    public static readonly string[] Names = ["Wax", "Waa", "Wya", "b", "by"];

    public Parameters(ModelShape shape)
    {
        Shape = shape;
        Data = new float[shape.ParameterCount];
    }

    public ModelShape Shape { get; }
    public float[] Data { get; }

    public Span<float> Wax => Slice("Wax");
    public Span<float> Waa => Slice("Waa");
    public Span<float> Wya => Slice("Wya");
    public Span<float> B => Slice("b");
    public Span<float> By => Slice("by");

    /// <summary>Offset and row-major shape of a named tensor in the flat buffer.</summary>
    public static (int Offset, int[] Dims) Layout(ModelShape shape, string name)
    {
        RnnDims d = shape.Dims(1, 1);
        return name switch
        {
            "Wax" => (d.WaxOffset, [d.H, d.V]),
            "Waa" => (d.WaaOffset, [d.H, d.H]),
            "Wya" => (d.WyaOffset, [d.V, d.H]),
            "b" => (d.BOffset, [d.H]),
            "by" => (d.ByOffset, [d.V]),
            _ => throw new ArgumentException($"no tensor named {name}"),
        };
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
        FillNormal(p.Wax, rng, scheme == InitScheme.Small ? 0.01 : 1.0);   // one-hot input: fan-in 1
        FillNormal(p.Waa, rng, scheme == InitScheme.Small ? 0.01 : 1.0 / Math.Sqrt(shape.H));
        FillNormal(p.Wya, rng, scheme == InitScheme.Small ? 0.01 : 1.0 / Math.Sqrt(shape.H));
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
