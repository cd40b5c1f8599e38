// The cpu backends' vector dropout against DropoutMask.Factor, the definition the GPU kernels and
// the reference models use: the same factor for every unit, bit for bit, on every vector path CI
// runs (AVX-512, AVX2, neither), and nothing past the row touched.
using GpuDinoRnn.Backends;
using GpuDinoRnn.Kernels;

namespace GpuDinoRnn.Tests.Backends;

public sealed unsafe class CpuDropoutTests
{
    [Theory]
    [InlineData(0.1f)]
    [InlineData(0.3f)]
    [InlineData(0.5f)]
    [InlineData(0.97f)]
    public void EveryUnitGetsDropoutMasksFactor(float p)
    {
        var random = new Random(5);
        int kept = 0, dropped = 0;
        foreach (int n in new[] { 1, 3, 7, 8, 15, 16, 17, 31, 50, 192, 300 })
            for (int row = 0; row < 20; row++)
            {
                ulong key = DropoutMask.RowKey(seed: 7, update: (uint)row, layer: row % 3, t: row, b: n);
                var values = new PinnedFloats(n + 16);
                for (int i = 0; i < n; i++)
                    values.Span[i] = (float)(random.NextDouble() * 4 - 2);
                values.Span[n..].Fill(float.NaN);
                var before = values.Span.ToArray();

                CpuDropout.Apply(values.Ptr, n, key, p);

                for (int i = 0; i < n; i++)
                {
                    float want = before[i] * DropoutMask.Factor(p, key, i);
                    Assert.Equal(BitConverter.SingleToInt32Bits(want), BitConverter.SingleToInt32Bits(values.Span[i]));
                    if (values.Span[i] == 0f)
                        dropped++;
                    else
                        kept++;
                }
                for (int i = n; i < n + 16; i++)
                    Assert.True(float.IsNaN(values.Span[i]), $"unit {i} past a row of {n} was written");
            }
        // The rate comes out near p (about 15,000 units), so a mask stuck at 0 or 1 shows.
        Assert.InRange(dropped / (double)(kept + dropped), p - 0.03, p + 0.03);
    }
}
