// The kernels' tanh (KernelMath.Tanh, in place of XMath.Tanh, which CUDA runs as tanh.approx.f32)
// against float64 Math.Tanh, run here as plain .NET code: the same arithmetic every backend runs.
using GpuDinoRnn.Kernels;

namespace GpuDinoRnn.Tests.Kernels;

public sealed class KernelMathTests
{
    [Fact]
    public void TanhIsWithinSevenUlpOddBoundedAndKeepsNaN()
    {
        var xs = new List<float>();
        for (float x = 1e-8f; x < 1e-3f; x *= 1.01f)
            xs.Add(x);
        for (int i = 0; i <= 1_000_000; i++)
            xs.Add(i * 1e-5f);
        xs.AddRange([7.9f, 7.91f, 9f, 20f, 1e10f, float.MaxValue, float.PositiveInfinity]);

        double worstUlp = 0;
        foreach (float x in xs)
        {
            float got = KernelMath.Tanh(x);
            double want = Math.Tanh(x);
            Assert.True(Math.Abs(got) <= 1f, $"tanh({x}) = {got}");
            Assert.Equal(-got, KernelMath.Tanh(-x));
            double ulp = Math.Max(float.Epsilon, MathF.BitIncrement(MathF.Abs((float)want)) - MathF.Abs((float)want));
            worstUlp = Math.Max(worstUlp, Math.Abs(got - want) / ulp);
        }
        Assert.True(worstUlp <= 7, $"worst error {worstUlp:F2} ulp");
        Assert.Equal(0f, KernelMath.Tanh(0f));
        Assert.True(float.IsNaN(KernelMath.Tanh(float.NaN)), "a NaN must stay NaN, so a diverged run shows");
    }
}
