// The stack reference is checked like the vanilla one: every gradient tensor of every cell, one
// and several layers, with and without dropout and an initial state, against central finite
// differences of its own loss; and for one vanilla layer it must agree with ReferenceRnn.
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Reference;

public class ReferenceStackTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(CellKind.Rnn, 2, 0f, true)]
    [InlineData(CellKind.Gru, 1, 0f, false)]
    [InlineData(CellKind.Gru, 2, 0.3f, true)]
    [InlineData(CellKind.Lstm, 1, 0f, true)]
    [InlineData(CellKind.Lstm, 3, 0.4f, false)]
    public void GradientsMatchFiniteDifferences(CellKind cell, int layers, float dropout, bool initialState)
    {
        var shape = new ModelShape(3, 5, cell, layers);
        var p = TestData.ToDouble(TestData.RandomParameters(shape, seed: 17, scale: 0.8).Data);
        var batch = Batch.FromEncoded(TestData.RandomNames(3, shape.V, seed: 5, minLength: 1, maxLength: 4));
        Assert.True(batch.Lengths.Distinct().Count() > 1, "the batch must be padded");
        double[]? s0 = initialState ? Enumerable.Range(0, batch.B * shape.StateSize).Select(i => Math.Sin(i + 1) * 0.7).ToArray() : null;
        var drop = new DropoutSettings(dropout, seed: 9, update: 4);

        var analytic = ReferenceStack.Run(p, shape, batch, s0, drop).Grad;
        const double eps = 1e-6;
        foreach (var name in Parameters.NamesOf(shape))
        {
            var (offset, dims) = Parameters.Layout(shape, name);
            int n = dims.Aggregate(1, (x, y) => x * y);
            double maxDiff = 0, maxGrad = 0;
            for (int e = offset; e < offset + n; e++)
            {
                var plus = (double[])p.Clone();
                var minus = (double[])p.Clone();
                plus[e] += eps;
                minus[e] -= eps;
                double numeric = (ReferenceStack.Loss(plus, shape, batch, s0, drop) - ReferenceStack.Loss(minus, shape, batch, s0, drop)) / (2 * eps);
                maxDiff = Math.Max(maxDiff, Math.Abs(analytic[e] - numeric));
                maxGrad = Math.Max(maxGrad, Math.Abs(numeric));
            }
            output.WriteLine($"d{name}: max |analytic − finite difference| = {maxDiff:E2}, largest gradient {maxGrad:E2}");
            Assert.True(maxGrad > 1e-3, $"d{name} is trivially zero in this case");
            Assert.True(maxDiff < 1e-7, $"d{name} differs from finite differences by {maxDiff:E2}");
        }
    }

    [Fact]
    public void OneVanillaLayerIsTheCourseModel()
    {
        var shape = new ModelShape(6, 7);
        var p = TestData.ToDouble(TestData.RandomParameters(shape, seed: 3).Data);
        var batch = Batch.FromEncoded(TestData.RandomNames(4, shape.V, seed: 8));
        var s0 = Enumerable.Range(0, batch.B * shape.H).Select(i => Math.Cos(i) * 0.5).ToArray();
        var stack = ReferenceStack.Run(p, shape, batch, s0);
        var rnn = ReferenceRnn.Run(p, shape.H, shape.V, batch, s0);
        Assert.Equal(rnn.Loss, stack.Loss, 1e-12);
        for (int e = 0; e < p.Length; e++)
            Assert.Equal(rnn.Grad[e], stack.Grad[e], 1e-12);
        var final = rnn.A.AsSpan(batch.T * batch.B * shape.H).ToArray();
        for (int e = 0; e < final.Length; e++)
            Assert.Equal(final[e], stack.FinalState[e], 1e-12);
    }

    [Fact]
    public void DropoutDropsAboutTheRateAskedAndScalesTheRest()
    {
        var drop = new DropoutSettings(0.3f, seed: 1, update: 7);
        var factors = Enumerable.Range(0, 20000).Select(i => drop.Factor(1 + i % 2, i % 13, i % 7, i)).ToArray();
        double dropped = factors.Count(f => f == 0) / (double)factors.Length;
        output.WriteLine($"dropped {dropped:P2} at rate 0.3");
        Assert.InRange(dropped, 0.28, 0.32);
        Assert.All(factors, f => Assert.True(f == 0 || Math.Abs(f - 1 / 0.7f) < 1e-6));
        Assert.NotEqual(factors, Enumerable.Range(0, 20000).Select(i => new DropoutSettings(0.3f, 1, 8).Factor(1 + i % 2, i % 13, i % 7, i)));
        Assert.All(Enumerable.Range(0, 100), i => Assert.Equal(1f, DropoutSettings.None.Factor(1, i, i, i)));
    }

    /// <summary>
    /// A mask row (one layer input, step and name: H units) changes with each of its coordinates and
    /// with the seed and the update: two rows that differ in any one of them agree on about
    /// p² + (1 − p)² of their units, as independent draws do, not on all of them.
    /// </summary>
    [Fact]
    public void EveryCoordinateOfARowChangesItsMask()
    {
        const float p = 0.3f;
        const int units = 4000;
        bool[] Row(uint seed, uint update, int layer, int t, int b) =>
            Enumerable.Range(0, units).Select(i => DropoutMask.Factor(p, seed, update, layer, t, b, i) == 0f).ToArray();
        var row = Row(5, 7, 1, 3, 2);
        var others = new (string Changed, bool[] Mask)[]
        {
            ("seed", Row(6, 7, 1, 3, 2)), ("update", Row(5, 8, 1, 3, 2)), ("layer", Row(5, 7, 2, 3, 2)),
            ("t", Row(5, 7, 1, 4, 2)), ("b", Row(5, 7, 1, 3, 3)), ("t and b swapped", Row(5, 7, 1, 2, 3)),
        };
        double independent = p * p + (1 - p) * (1 - p); // 0.58
        foreach (var (changed, mask) in others)
        {
            double agree = Enumerable.Range(0, units).Count(i => mask[i] == row[i]) / (double)units;
            output.WriteLine($"{changed}: {agree:P1} of the units agree (independent: {independent:P1})");
            Assert.InRange(agree, independent - 0.04, independent + 0.04);
        }
    }

    [Theory]
    [InlineData(CellKind.Gru)]
    [InlineData(CellKind.Lstm)]
    public void GatesAreFarFromLinearInTheFiniteDifferenceCase(CellKind cell)
    {
        // Guards the test above: with tiny weights a wrong derivative of a gate could still pass.
        var shape = new ModelShape(3, 5, cell, 1);
        var p = TestData.ToDouble(TestData.RandomParameters(shape, seed: 17, scale: 0.8).Data);
        var batch = Batch.FromEncoded(TestData.RandomNames(3, shape.V, seed: 5, minLength: 1, maxLength: 4));
        var state = ReferenceStack.Run(p, shape, batch).FinalState;
        Assert.Contains(state, x => Math.Abs(x) > 0.3);
    }
}
