// Small deterministic inputs shared by the tests, and a comparison that prints its evidence.
using GpuDinoRnn.Data;
using GpuDinoRnn.Model;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Reference;

public static class TestData
{
    /// <summary>The repository root (the folder holding GpuDinoRnn.sln).</summary>
    public static string RepoRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "GpuDinoRnn.sln")))
                dir = dir.Parent;
            return dir?.FullName ?? throw new InvalidOperationException("GpuDinoRnn.sln not found above the test binaries");
        }
    }

    public static string BundledNames => Path.Combine(RepoRoot, "data", "dinos.txt");

    /// <summary>../shared beside the repository: present for developers and CI, absent on a user's clone.</summary>
    public static string SharedData(string file) => Path.Combine(RepoRoot, "..", "shared", "data", file);

    /// <summary>
    /// Positive inputs for checking a tanh: every float step near 0, a grid 1e−5 apart out to 20
    /// (tanh is ±1 in float from 7.9 on), then the far values.
    /// </summary>
    public static List<float> TanhInputs()
    {
        var xs = new List<float>();
        for (float x = 1e-8f; x < 1e-3f; x *= 1.01f)
            xs.Add(x);
        for (int i = 0; i <= 2_000_000; i++)
            xs.Add(i * 1e-5f);
        xs.AddRange([9f, 20f, 1e10f, float.MaxValue]);
        return xs;
    }

    /// <summary>How far a float result is from the float64 value, in units of the float's last place.</summary>
    public static double UlpError(float got, double want)
    {
        double ulp = Math.Max(float.Epsilon, MathF.BitIncrement(MathF.Abs((float)want)) - MathF.Abs((float)want));
        return Math.Abs(got - want) / ulp;
    }

    /// <summary>
    /// Weights ~ N(0, scale²) large enough that tanh is far from linear, biases non-zero too.
    /// </summary>
    public static Parameters RandomParameters(ModelShape shape, int seed, double scale = 0.5)
    {
        var p = new Parameters(shape);
        var rng = new Random(seed);
        for (int e = 0; e < p.Data.Length; e++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            p.Data[e] = (float)(scale * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return p;
    }

    /// <summary>Names of different lengths as id arrays over a vocabulary of size v (ids 1…v−1).</summary>
    public static int[][] RandomNames(int count, int v, int seed, int minLength = 1, int maxLength = 6)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count)
            .Select(_ => Enumerable.Range(0, rng.Next(minLength, maxLength + 1)).Select(_ => rng.Next(1, v)).ToArray())
            .ToArray();
    }

    /// <summary>One chunk of continuous text for each of `streams` streams: 4 random symbols in, 4 out.</summary>
    public static Batch RandomStreamChunk(Random rng, int streams, int v)
    {
        int[][] Symbols() => Enumerable.Range(0, streams).Select(_ => Enumerable.Range(0, 4).Select(_ => rng.Next(v)).ToArray()).ToArray();
        var inputs = Symbols();
        return Batch.FromStreams(inputs, Symbols());
    }

    public static double[] ToDouble(ReadOnlySpan<float> x)
    {
        var r = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
            r[i] = x[i];
        return r;
    }

    /// <summary>
    /// A backend's loss and every gradient tensor against the reference, printing the evidence.
    /// float32 sums of terms that cancel: each tensor's tolerance scales with its largest element.
    /// </summary>
    public static void AssertGradientsMatch(ITestOutputHelper output, ModelShape shape, ReferenceResult expected, float loss, float[] grad)
    {
        output.WriteLine($"loss {loss} vs reference {expected.Loss}");
        Assert.Equal(expected.Loss, loss, expected.Loss * 1e-5);
        foreach (var name in Parameters.Names)
        {
            var (offset, dims) = Parameters.Layout(shape, name);
            int n = dims.Aggregate(1, (a, b) => a * b);
            var want = expected.Grad.AsSpan(offset, n);
            double scale = want.ToArray().Max(Math.Abs);
            AssertClose(output, $"d{name}", want, grad.AsSpan(offset, n), rtol: 1e-4, atol: 1e-4 * scale);
        }
    }

    /// <summary>
    /// Asserts |actual − expected| ≤ atol + rtol·|expected| element-wise, and prints the max
    /// differences and the first mismatches either way.
    /// </summary>
    public static void AssertClose(ITestOutputHelper? output, string what, ReadOnlySpan<double> expected, ReadOnlySpan<float> actual, double rtol, double atol)
    {
        Assert.Equal(expected.Length, actual.Length);
        double maxAbs = 0, maxRel = 0;
        var bad = new List<string>();
        for (int i = 0; i < expected.Length; i++)
        {
            double diff = Math.Abs(actual[i] - expected[i]);
            if (!(diff <= atol + rtol * Math.Abs(expected[i])))
            {
                if (bad.Count < 5)
                    bad.Add($"[{i}] expected {expected[i]:G9} got {actual[i]:G9}");
                if (double.IsNaN(diff))
                    diff = double.PositiveInfinity;
            }
            maxAbs = Math.Max(maxAbs, diff);
            if (Math.Abs(expected[i]) > 1e-12)
                maxRel = Math.Max(maxRel, diff / Math.Abs(expected[i]));
        }
        output?.WriteLine($"{what}: n={expected.Length} max abs diff {maxAbs:E2}, max rel diff {maxRel:E2}");
        Assert.True(bad.Count == 0, $"{what}: {bad.Count}+ mismatches (rtol {rtol}, atol {atol}): {string.Join("; ", bad)}");
    }
}
