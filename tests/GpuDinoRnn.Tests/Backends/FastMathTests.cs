// FastMath.Tanh against float64 Math.Tanh on a dense grid, and the kernel's vector body against
// its one-float tail.
using System.Runtime.CompilerServices;
using GpuDinoRnn.Backends;
using GpuDinoRnn.Tests.Reference;

namespace GpuDinoRnn.Tests.Backends;

public sealed unsafe class FastMathTests
{
    [Fact]
    public void TanhIsWithinSevenUlpEverywhereAndExactWhereItMatters()
    {
        var xs = TestData.TanhInputs();
        var values = new PinnedFloats(2 * xs.Count);
        for (int i = 0; i < xs.Count; i++)
        {
            values.Span[2 * i] = xs[i];
            values.Span[2 * i + 1] = -xs[i];
        }
        var inputs = values.Span.ToArray();

        CpuKernels.Tanh(values.Ptr, values.Length);

        double worstUlp = 0;
        for (int e = 0; e < inputs.Length; e++)
        {
            double want = Math.Tanh(inputs[e]);
            float got = values.Span[e];
            Assert.True(Math.Abs(got) <= 1f, $"tanh({inputs[e]}) = {got}");
            worstUlp = Math.Max(worstUlp, TestData.UlpError(got, want));
        }
        Assert.True(worstUlp <= 7, $"worst error {worstUlp:F2} ulp");
        for (int e = 0; e < inputs.Length; e += 2)
            Assert.Equal(-values.Span[e], values.Span[e + 1]); // odd
        var zero = new PinnedFloats(64);
        CpuKernels.Tanh(zero.Ptr, zero.Length);
        Assert.All(zero.Span.ToArray(), x => Assert.Equal(0f, x)); // padding stays exactly 0
    }

    [Theory]
    [InlineData("tanh", -6.0, 6.0)]
    [InlineData("exp", -50.0, 10.0)]
    public void TheVectorBodyAndTheOneFloatTailAgreeBitForBit(string function, double from, double to)
    {
        delegate*<float*, int, void> apply = function == "tanh" ? &CpuKernels.Tanh : &CpuKernels.Exp;
        var random = new Random(3);
        const int n = 16 * 7 + 5;
        var all = new PinnedFloats(n);
        for (int e = 0; e < n; e++)
            all.Span[e] = (float)(from + random.NextDouble() * (to - from));
        var one = new PinnedFloats(n);
        all.Span.CopyTo(one.Span);

        apply(all.Ptr, n);
        for (int e = 0; e < n; e++)
            apply(one.Ptr + e, 1);

        Assert.Equal(one.Span.ToArray(), all.Span.ToArray());
    }

    [Fact]
    public void ExpIsWithinTwoUlpAndZeroWhereTheSoftmaxNeedsIt()
    {
        var xs = new List<float>();
        for (int i = 0; i <= 1_000_000; i++)
            xs.Add(-87.3f + i * (88f + 87.3f) / 1_000_000); // −87.3 … 88
        for (float x = 1e-8f; x < 1e-2f; x *= 1.01f)
        {
            xs.Add(x);
            xs.Add(-x);
        }
        xs.AddRange([0f, -100f, float.NegativeInfinity, float.NaN]);
        var values = new PinnedFloats(xs.Count);
        xs.ToArray().CopyTo(values.Span);

        CpuKernels.Exp(values.Ptr, values.Length);

        double worstUlp = 0;
        for (int e = 0; e < xs.Count - 4; e++)
        {
            float want = (float)Math.Exp(xs[e]);
            float got = values.Span[e];
            worstUlp = Math.Max(worstUlp, Math.Abs((double)got - Math.Exp(xs[e])) / (MathF.BitIncrement(want) - want));
        }
        Assert.True(worstUlp <= 2, $"worst error {worstUlp:F2} ulp");
        int tail = xs.Count - 4;
        Assert.Equal(1f, values.Span[tail]);
        Assert.Equal(0f, values.Span[tail + 1]); // below the normal floats
        Assert.Equal(0f, values.Span[tail + 2]); // the softmax's −∞ padding
        Assert.True(float.IsNaN(values.Span[tail + 3]), "NaN must stay NaN for the divergence guard");
    }

    [Fact]
    public void TheCellsFastSigmoidIsWithin3e7()
    {
        double worst = 0;
        for (int i = -400_000; i <= 400_000; i++)
        {
            float x = i * 1e-4f;
            var sigmoid = CpuCells.Fast.Sigmoid(Unsafe.As<float, Simd1>(ref x));
            float got = Unsafe.As<Simd1, float>(ref sigmoid);
            worst = Math.Max(worst, Math.Abs(got - 1 / (1 + Math.Exp(-x))));
        }
        Assert.True(worst <= 3e-7, $"worst error {worst:E2}");
    }
}
