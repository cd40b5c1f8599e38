// The reference itself is checked: its gradients against central finite differences of its
// loss, for every parameter tensor, with padding, B > 1 and a non-zero initial state.
using GpuDinoRnn.Data;
using GpuDinoRnn.Model;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Reference;

public class ReferenceRnnTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void GradientsMatchFiniteDifferences(bool initialState)
    {
        const int h = 4, v = 6;
        var shape = new ModelShape(h, v);
        var p = TestData.ToDouble(TestData.RandomParameters(shape, seed: 7, scale: 0.8).Data);
        var batch = Batch.FromEncoded(TestData.RandomNames(3, v, seed: 3, minLength: 1, maxLength: 4));
        Assert.True(batch.Lengths.Distinct().Count() > 1, "the batch must be padded");
        double[]? a0 = initialState ? Enumerable.Range(0, batch.B * h).Select(i => Math.Sin(i + 1) * 0.7).ToArray() : null;

        var analytic = ReferenceRnn.Run(p, h, v, batch, a0).Grad;
        var numeric = new double[p.Length];
        const double eps = 1e-6;
        for (int e = 0; e < p.Length; e++)
        {
            var plus = (double[])p.Clone();
            var minus = (double[])p.Clone();
            plus[e] += eps;
            minus[e] -= eps;
            numeric[e] = (ReferenceRnn.Loss(plus, h, v, batch, a0) - ReferenceRnn.Loss(minus, h, v, batch, a0)) / (2 * eps);
        }
        foreach (var name in Parameters.Names)
        {
            var (offset, dims) = Parameters.Layout(shape, name);
            int n = dims.Aggregate(1, (x, y) => x * y);
            var expected = numeric.AsSpan(offset, n);
            var actual = analytic.AsSpan(offset, n).ToArray().Select(x => (float)x).ToArray();
            Assert.Contains(expected.ToArray(), x => Math.Abs(x) > 1e-3); // the tensor's gradient is not trivially zero
            // Compare in double: the float cast above is only for the shared printer.
            double maxDiff = 0;
            for (int i = 0; i < n; i++)
                maxDiff = Math.Max(maxDiff, Math.Abs(analytic[offset + i] - expected[i]));
            output.WriteLine($"d{name}: max |analytic − finite difference| = {maxDiff:E2}");
            Assert.True(maxDiff < 1e-7, $"d{name} differs from finite differences by {maxDiff:E2}");
        }
    }

    [Fact]
    public void TanhIsFarFromLinearInTheFiniteDifferenceCase()
    {
        // Guards the test above: with tiny weights a wrong tanh derivative could still pass.
        var shape = new ModelShape(4, 6);
        var p = TestData.ToDouble(TestData.RandomParameters(shape, seed: 7, scale: 0.8).Data);
        var batch = Batch.FromEncoded(TestData.RandomNames(3, 6, seed: 3, minLength: 1, maxLength: 4));
        var a = ReferenceRnn.Run(p, 4, 6, batch).A;
        Assert.Contains(a, x => Math.Abs(x) > 0.5);
    }
}
