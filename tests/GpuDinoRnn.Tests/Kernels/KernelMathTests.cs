// The kernels' tanh (KernelMath.Tanh, in place of XMath.Tanh, which CUDA runs as tanh.approx.f32)
// against float64 Math.Tanh, run here as plain .NET code: the same arithmetic every backend runs.
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Tests.Reference;

namespace GpuDinoRnn.Tests.Kernels;

public sealed class KernelMathTests
{
    [Fact]
    public void TanhIsWithinSevenUlpOddBoundedAndKeepsNaN()
    {
        var xs = TestData.TanhInputs();
        xs.AddRange([7.9f, 7.91f, float.PositiveInfinity]);

        double worstUlp = 0;
        foreach (float x in xs)
        {
            float got = KernelMath.Tanh(x);
            double want = Math.Tanh(x);
            Assert.True(Math.Abs(got) <= 1f, $"tanh({x}) = {got}");
            Assert.Equal(-got, KernelMath.Tanh(-x));
            worstUlp = Math.Max(worstUlp, TestData.UlpError(got, want));
        }
        Assert.True(worstUlp <= 7, $"worst error {worstUlp:F2} ulp");
        Assert.Equal(0f, KernelMath.Tanh(0f));
        Assert.True(float.IsNaN(KernelMath.Tanh(float.NaN)), "a NaN must stay NaN, so a diverged run shows");
    }
}
