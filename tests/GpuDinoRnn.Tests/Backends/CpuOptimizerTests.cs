// CpuOptimizer runs whole vectors and then a scalar tail through one generic body: the two must
// give the same bits, element for element, for every rule and clipping mode.
using GpuDinoRnn.Backends;
using GpuDinoRnn.Kernels;

namespace GpuDinoRnn.Tests.Backends;

public sealed class CpuOptimizerTests
{
    [Theory]
    [InlineData(OptimizerKind.Sgd, ClipMode.Value, 0.05f)]
    [InlineData(OptimizerKind.Sgd, ClipMode.Norm, 0.5f)]
    [InlineData(OptimizerKind.Sgd, ClipMode.Value, 0f)]
    [InlineData(OptimizerKind.Momentum, ClipMode.Norm, 0.5f)]
    [InlineData(OptimizerKind.Adam, ClipMode.Value, 0.05f)]
    [InlineData(OptimizerKind.AdamW, ClipMode.Norm, 0.5f)]
    [InlineData(OptimizerKind.Adagrad, ClipMode.Value, 0f)]
    [InlineData(OptimizerKind.RmsProp, ClipMode.Value, 0.05f)]
    public void VectorsGiveTheBitsOfTheOneFloatPath(OptimizerKind kind, ClipMode mode, float clip)
    {
        const int n = 101; // whole vectors of every width, then a tail
        var random = new Random(7);
        float[] Fill(float scale) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() - 0.5) * scale).ToArray();
        float[] p = Fill(1f), g = Fill(0.4f), m = Fill(0.1f), v = Fill(0.01f).Select(Math.Abs).ToArray();
        // Zeros of both signs and the limits themselves, in the vectors and in the tail.
        foreach (int e in new[] { 3, 17, 98 })
            (g[e], g[e + 1], g[e + 2]) = (-0f, 0f, -clip);
        g[40] = clip;
        float sumSquares = g.Sum(x => x * x);
        var settings = new StepSettings(0.03f, clip, mode, CarryState: false, new OptimizerConfig(kind)).ForUpdate(3);

        float[] pv = [.. p], mv = [.. m], vv = [.. v];
        CpuOptimizer.Update(pv, g, mv, vv, settings, sumSquares);
        float[] ps = [.. p], ms = [.. m], vs = [.. v];
        for (int e = 0; e < n; e++)
            CpuOptimizer.Update(ps.AsSpan(e, 1), g.AsSpan(e, 1), ms.AsSpan(e, 1), vs.AsSpan(e, 1), settings, sumSquares);

        Assert.NotEqual(p, pv); // the step did something
        Assert.Equal(ps, pv);
        Assert.Equal(ms, mv);
        Assert.Equal(vs, vv);
    }

    [Fact]
    public void ANonFiniteGradientLeavesEverythingAsItWas()
    {
        float[] p = [1f, 2f], m = [0.5f, 0.5f], v = [0.25f, 0.25f];
        var settings = new StepSettings(0.1f, 0f, ClipMode.Value, CarryState: false, new OptimizerConfig(OptimizerKind.Adam)).ForUpdate(1);
        CpuOptimizer.Update(p, [float.NaN, 1f], m, v, settings, float.NaN);
        Assert.Equal([1f, 2f], p);
        Assert.Equal([0.5f, 0.5f], m);
        Assert.Equal([0.25f, 0.25f], v);
    }
}
