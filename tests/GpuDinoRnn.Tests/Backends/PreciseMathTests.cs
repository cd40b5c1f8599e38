// The course preset's tanh and exp (PreciseMath, through CpuKernels.PreciseTanh and PreciseExp)
// must give TensorPrimitives' bits exactly, since the preset's printed results depend on them. CI
// runs this on every vector width (.ci/run's narrow runs).
using System.Numerics.Tensors;
using GpuDinoRnn.Backends;

namespace GpuDinoRnn.Tests.Backends;

public sealed unsafe class PreciseMathTests
{
    /// <summary>Every 257th float bit pattern (16.7 million, each sign and exponent), then the edges.</summary>
    private static float[] Inputs()
    {
        var xs = new List<float>();
        for (long bits = 0; bits < 1L << 32; bits += 257)
            xs.Add(BitConverter.UInt32BitsToSingle((uint)bits));
        xs.AddRange([0f, -0f, float.Epsilon, -float.Epsilon, float.MaxValue, float.MinValue, float.PositiveInfinity,
            float.NegativeInfinity, float.NaN, 88.72284f, 88.72285f, 87f, -87f, -103.97208f, -103.97209f, -104f, 1e-8f, -1e-8f]);
        while (xs.Count % 64 != 0)
            xs.Add(0.5f);
        return [.. xs];
    }

    [Theory]
    [InlineData("tanh")]
    [InlineData("exp")]
    public void GivesTensorPrimitivesBitsForEveryKindOfFloat(string function)
    {
        float[] inputs = Inputs();
        var want = new float[inputs.Length];
        var got = new PinnedFloats(inputs.Length);
        inputs.CopyTo(got.Span);
        if (function == "tanh")
        {
            TensorPrimitives.Tanh(inputs, want);
            CpuKernels.PreciseTanh(got.Ptr, got.Length);
        }
        else
        {
            TensorPrimitives.Exp(inputs, want);
            CpuKernels.PreciseExp(got.Ptr, got.Length);
        }

        int wrong = 0;
        string first = "";
        for (int e = 0; e < inputs.Length; e++)
        {
            // A NaN's payload may differ (a NaN is a NaN to every check downstream).
            if (BitConverter.SingleToUInt32Bits(got.Span[e]) == BitConverter.SingleToUInt32Bits(want[e]) ||
                float.IsNaN(got.Span[e]) && float.IsNaN(want[e]))
                continue;
            if (wrong++ == 0)
                first = $"{function}({inputs[e]:R}) = {got.Span[e]:R}, TensorPrimitives {want[e]:R}";
        }
        Assert.True(wrong == 0, $"{wrong} of {inputs.Length} differ; first: {first}");
    }

    [Fact]
    public void TanhOfEveryLengthMatchesInPlace()
    {
        // Shorter than a vector (the library's own path), whole vectors, and an overlapping last one.
        var random = new Random(5);
        for (int n = 1; n <= 70; n++)
        {
            float[] xs = Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 8 - 4)).ToArray();
            var want = new float[n];
            TensorPrimitives.Tanh(xs, want);
            var got = new PinnedFloats(n + 1);
            xs.CopyTo(got.Span);
            got.Span[n] = float.NaN; // past the end: must be left alone
            CpuKernels.PreciseTanh(got.Ptr, n);
            Assert.Equal(want, got.Span[..n].ToArray());
            Assert.True(float.IsNaN(got.Span[n]), $"n = {n} wrote past the end");
        }
    }

    [Fact]
    public void OneFloatGivesAVectorLanesBits()
    {
        // Simd1's side of the formula (what a tail one float at a time would run).
        var random = new Random(6);
        float* lanes = stackalloc float[4];
        for (int i = 0; i < 10_000; i++)
        {
            for (int k = 0; k < 4; k++)
                lanes[k] = (float)(random.NextDouble() * 40 - 20);
            float x = lanes[i % 4];
            Simd128.Store(PreciseMath.Tanh(Simd128.Load(lanes)), lanes);
            Assert.Equal(BitConverter.SingleToUInt32Bits(lanes[i % 4]), BitConverter.SingleToUInt32Bits(Tanh1(x)));
        }

        static float Tanh1(float x)
        {
            float r;
            Simd1.Store(PreciseMath.Tanh(Simd1.Load(&x)), &r);
            return r;
        }
    }
}
