// The cpu backend's SIMD kernels against plain loops, on sizes that hit every tile remainder.
// Everything a kernel must not touch (rows and columns outside its range, unused input columns)
// is NaN, so a stray read or write shows as NaN in the result or outside it.
using System.Numerics.Tensors;
using GpuDinoRnn.Backends;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Backends;

public sealed unsafe class CpuKernelsTests(ITestOutputHelper output)
{
    public static TheoryData<int, int, int> Sizes()
    {
        var data = new TheoryData<int, int, int>();
        int[] sizes = [1, 3, 17, 50, 129];
        foreach (int n in sizes)
            foreach (int k in sizes)
                data.Add(n, k, sizes[(n + k) % sizes.Length]);
        return data;
    }

    private static PinnedFloats Random(int length, int seed)
    {
        var buffer = new PinnedFloats(length);
        var random = new Random(seed);
        for (int e = 0; e < length; e++)
            buffer.Span[e] = (float)(random.NextDouble() * 2 - 1);
        return buffer;
    }

    private static void Poison(PinnedFloats buffer, int rows, int ld, int cols)
    {
        for (int i = 0; i < rows; i++)
            buffer.Span.Slice(i * ld + cols, ld - cols).Fill(float.NaN);
    }

    /// <summary>
    /// The widths a product is asked for: Padded(cols), and Columns(cols) when that is narrower
    /// (512-bit vectors), whose 4-row tiles end in a vector and a half.
    /// </summary>
    private static int[] Widths(int cols) => CpuKernels.Columns(cols) == CpuKernels.Padded(cols)
        ? [CpuKernels.Padded(cols)]
        : [CpuKernels.Padded(cols), CpuKernels.Columns(cols)];

    [Fact]
    public void ColumnsCoverTheRealOnesAndPadToTheSameWidth()
    {
        for (int n = 1; n <= 300; n++)
        {
            int np = CpuKernels.Columns(n), padded = CpuKernels.Padded(n);
            Assert.InRange(np, n, padded);
            // Only 512-bit vectors end in a half vector, and only a quarter of the last tile is dropped.
            Assert.True(np == padded || (CpuKernels.Lanes == 16 && np == padded - 8), $"Columns({n}) = {np}, padded {padded}");
        }
        if (CpuKernels.Lanes == 16)
            Assert.Equal(56, CpuKernels.Columns(50));
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void AddProductMatchesPlainLoops(int n, int k, int cols)
    {
        foreach (int np in Widths(cols))
            CheckAddProduct(n, k, cols, np);
    }

    private void CheckAddProduct(int n, int k, int cols, int np)
    {
        // Columns np … padded of C may be computed (rows outside 4-row tiles) but must keep their
        // values, R's being 0 there; beyond padded nothing is touched.
        int padded = CpuKernels.Padded(cols), ld = padded + CpuKernels.Pad;
        int ldl = k + 3;
        var l = Random(n * ldl, 1);
        Poison(l, n, ldl, k);
        var r = Random(k * ld, 2);
        for (int j = 0; j < k; j++)
            r.Span.Slice(j * ld + cols, padded - cols).Clear(); // zero padding, as the backend keeps it
        Poison(r, k, ld, padded);
        var c = Random((n + 1) * ld, 3);
        Poison(c, n + 1, ld, padded);
        c.Span.Slice(n * ld, ld).Fill(float.NaN); // a row past the end
        var before = c.Span.ToArray();

        CpuKernels.AddProduct(c.Ptr, ld, l.Ptr, ldl, r.Ptr, ld, n, k, np);

        // One row at a time gives the same bits: a row in a 4-row tile sums in the same order.
        var rowByRow = new PinnedFloats(before.Length);
        before.CopyTo(rowByRow.Span);
        for (int i = 0; i < n; i++)
            CpuKernels.AddProduct(rowByRow.Ptr + (long)i * ld, ld, l.Ptr + (long)i * ldl, ldl, r.Ptr, ld, 1, k, np);
        Assert.Equal(rowByRow.Span.ToArray(), c.Span.ToArray());

        double worst = 0;
        for (int i = 0; i <= n; i++)
            for (int j = 0; j < ld; j++)
            {
                float got = c.Span[i * ld + j];
                if (i == n || j >= padded)
                {
                    Assert.True(float.IsNaN(got), $"C[{i}][{j}] outside the product was written");
                    continue;
                }
                if (j >= np)
                {
                    Assert.Equal(before[i * ld + j], got);
                    continue;
                }
                double want = before[i * ld + j];
                for (int e = 0; e < k; e++)
                    want += (double)l.Span[i * ldl + e] * r.Span[e * ld + j];
                worst = Math.Max(worst, Math.Abs(want - got));
                Assert.True(Math.Abs(want - got) <= 1e-5 * (k + 1), $"C[{i}][{j}] = {got}, want {want}");
            }
        output.WriteLine($"n {n}, k {k}, columns {cols} (computed {np}, padded {padded}): max |difference| {worst:E2}");
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    [InlineData(700, 9, 129)] // more input rows than one cache block
    public void AddTransposedProductMatchesPlainLoops(int n, int m, int cols)
    {
        foreach (int np in Widths(cols))
            CheckAddTransposedProduct(n, m, cols, np);
    }

    private void CheckAddTransposedProduct(int n, int m, int cols, int np)
    {
        int padded = CpuKernels.Padded(cols), ld = padded + CpuKernels.Pad;
        int ldl = m + 5;
        var l = Random(n * ldl, 4);
        Poison(l, n, ldl, m);
        var r = Random(n * ld, 5);
        for (int i = 0; i < n; i++)
            r.Span.Slice(i * ld + cols, padded - cols).Clear();
        Poison(r, n, ld, padded);
        // Only rows 1 … m−1 of C are asked for (row 0 and row m stay NaN), as one thread's share.
        var c = Random((m + 1) * ld, 6);
        Poison(c, m + 1, ld, padded);
        c.Span[..ld].Fill(float.NaN);
        c.Span.Slice(m * ld, ld).Fill(float.NaN);
        var before = c.Span.ToArray();

        CpuKernels.AddTransposedProduct(c.Ptr, ld, 1, m, l.Ptr, ldl, r.Ptr, ld, n, np);

        // The same sums one input row at a time: cache blocking must not change the order, nor the bits.
        var oneByOne = new PinnedFloats(before.Length);
        before.CopyTo(oneByOne.Span);
        for (int i = 0; i < n; i++)
            CpuKernels.AddTransposedProduct(oneByOne.Ptr, ld, 1, m, l.Ptr + (long)i * ldl, ldl, r.Ptr + (long)i * ld, ld, 1, np);
        Assert.Equal(oneByOne.Span.ToArray(), c.Span.ToArray());
        // And one output row at a time: a row in a 4-row tile has the bits of a single row.
        var rowByRow = new PinnedFloats(before.Length);
        before.CopyTo(rowByRow.Span);
        for (int i = 1; i < m; i++)
            CpuKernels.AddTransposedProduct(rowByRow.Ptr, ld, i, i + 1, l.Ptr, ldl, r.Ptr, ld, n, np);
        Assert.Equal(rowByRow.Span.ToArray(), c.Span.ToArray());

        double worst = 0;
        for (int i = 0; i <= m; i++)
            for (int j = 0; j < ld; j++)
            {
                float got = c.Span[i * ld + j];
                if (i == 0 || i == m || j >= padded)
                {
                    Assert.True(float.IsNaN(got), $"C[{i}][{j}] outside the product was written");
                    continue;
                }
                if (j >= np)
                {
                    Assert.Equal(before[i * ld + j], got);
                    continue;
                }
                double want = before[i * ld + j];
                for (int e = 0; e < n; e++)
                    want += (double)l.Span[e * ldl + i] * r.Span[e * ld + j];
                worst = Math.Max(worst, Math.Abs(want - got));
                Assert.True(Math.Abs(want - got) <= 1e-5 * (n + 1), $"C[{i}][{j}] = {got}, want {want}");
            }
        output.WriteLine($"n {n}, m {m}, columns {cols} (computed {np}, padded {padded}): max |difference| {worst:E2}");
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 17)]
    [InlineData(17, 3)]
    [InlineData(50, 50)]
    [InlineData(129, 27)]
    [InlineData(8, 8)]
    [InlineData(64, 64)]
    [InlineData(16, 27)]
    [InlineData(27, 16)]
    public void TransposeMatchesPlainLoops(int rows, int cols)
    {
        int lds = cols + 2, ldd = rows + 3;
        var src = Random(rows * lds, 7);
        var dst = new PinnedFloats((cols + 1) * ldd);
        dst.Span.Fill(float.NaN);

        CpuKernels.Transpose(src.Ptr, lds, dst.Ptr, ldd, rows, cols);

        for (int j = 0; j <= cols; j++)
            for (int i = 0; i < ldd; i++)
            {
                float got = dst.Span[j * ldd + i];
                if (j == cols || i >= rows)
                    Assert.True(float.IsNaN(got), $"dst[{j}][{i}] outside the transpose was written");
                else
                    Assert.Equal(src.Span[i * lds + j], got);
            }
    }

    [Theory]
    [InlineData(50, 50)]
    [InlineData(27, 50)]
    [InlineData(8, 16)]
    [InlineData(3, 17)]
    [InlineData(129, 27)]
    public void TransposeBlocksFillsWholeBlocks(int rows, int cols)
    {
        int rows8 = CpuKernels.Blocks8(rows), cols8 = CpuKernels.Blocks8(cols);
        int lds = cols8 + 3, ldd = rows8 + 2;
        // The source: rows × cols, its padding columns up to cols8, then NaN (never to be read),
        // and a NaN row after it (the missing rows must not be read either).
        var src = Random((rows + 1) * lds, 13);
        for (int i = 0; i <= rows; i++)
            for (int j = 0; j < lds; j++)
                if (i == rows || j >= cols8)
                    src.Span[i * lds + j] = float.NaN;
        var dst = new PinnedFloats((cols8 + 1) * ldd);
        dst.Span.Fill(float.NaN);

        CpuKernels.TransposeBlocks(src.Ptr, lds, dst.Ptr, ldd, rows, cols);

        bool blocks = System.Runtime.Intrinsics.X86.Avx.IsSupported; // without AVX, just rows × cols
        for (int j = 0; j <= cols8; j++)
            for (int i = 0; i < ldd; i++)
            {
                float got = dst.Span[j * ldd + i];
                if (i < rows && j < cols)
                    Assert.Equal(src.Span[i * lds + j], got);
                else if (!blocks || j >= cols8 || i >= rows8)
                    Assert.True(float.IsNaN(got), $"dst[{j}][{i}] outside the blocks was written");
                else if (i >= rows)
                    Assert.Equal(0f, got); // a missing source row
                else
                    Assert.Equal(src.Span[i * lds + j], got); // the source's padding columns
            }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(17)]
    public void AddAndTanhDerivativeMatchPlainLoops(int vectors)
    {
        int n = vectors * CpuKernels.Lanes;
        var a = Random(n + 1, 8);
        var b = Random(n + 1, 9);
        var dst = new PinnedFloats(n + 1);
        dst.Span.Fill(float.NaN);
        CpuKernels.Add(a.Ptr, b.Ptr, dst.Ptr, n);
        for (int e = 0; e < n; e++)
            Assert.Equal(a.Span[e] + b.Span[e], dst.Span[e]);
        Assert.True(float.IsNaN(dst.Span[n]));

        var dz = a.Span.ToArray();
        CpuKernels.MultiplyByTanhDerivative(a.Ptr, b.Ptr, n);
        for (int e = 0; e < n; e++)
            Assert.Equal(dz[e] * (1f - b.Span[e] * b.Span[e]), a.Span[e]);
        Assert.Equal(dz[n], a.Span[n]);
    }

    [Theory]
    [InlineData(1, 27, true, false)]
    [InlineData(5, 27, false, false)]
    [InlineData(9, 1, true, false)]
    [InlineData(4, 65, true, false)]
    [InlineData(5, 27, true, true)]
    [InlineData(3, 65, false, true)]
    [InlineData(70, 27, true, false)] // more rows than one block of logs
    [InlineData(70, 27, true, true)]
    public void SoftmaxCrossEntropyMatchesFloat64(int n, int v, bool gradients, bool preciseExp)
    {
        int ld = CpuKernels.Padded(v);
        var z = Random((n + 1) * ld, 10);
        for (int i = 0; i < n; i++)
        {
            for (int k = 0; k < v; k++)
                z.Span[i * ld + k] *= 8f;
            z.Span.Slice(i * ld + v, ld - v).Fill(float.NegativeInfinity); // the padding, as the backends keep it
        }
        z.Span.Slice(n * ld, ld).Fill(float.NaN); // a row past the end
        var logits = z.Span.ToArray();
        int[] y = Enumerable.Range(0, n).Select(i => (i * 7) % v).ToArray();
        var loss = new double[n + 1];
        loss[n] = double.NaN;
        const float scale = 0.25f;

        CpuKernels.SoftmaxCrossEntropy(z.Ptr, ld, n, v, y, loss.AsSpan(0, n), scale, gradients, preciseExp);

        for (int i = 0; i < n; i++)
        {
            var row = logits.AsSpan(i * ld, v).ToArray().Select(x => (double)x).ToArray();
            double max = row.Max(), sum = row.Sum(x => Math.Exp(x - max));
            Assert.Equal(Math.Log(sum) + max - row[y[i]], loss[i], 1e-5);
            for (int k = 0; k < ld; k++)
            {
                float got = z.Span[i * ld + k];
                if (k >= v)
                    Assert.Equal(0f, got); // −∞ padding comes out 0
                else if (gradients)
                    Assert.Equal(scale * (Math.Exp(row[k] - max) / sum - (k == y[i] ? 1 : 0)), got, 1e-6);
                else
                    Assert.Equal(Math.Exp(row[k] - max), got, 1e-6); // unnormalized probabilities
            }
        }
        Assert.True(double.IsNaN(loss[n]));
        Assert.All(z.Span.Slice(n * ld, ld).ToArray(), x => Assert.True(float.IsNaN(x), "a row past the end was written"));
    }

    /// <summary>
    /// A row's loss has the same bits however many rows share its call: threads split the output
    /// rows among them, and the losses (and so bits per char) must not depend on the thread count.
    /// Below 4 floats TensorPrimitives.Log was the scalar MathF.Log, whose bits differ now and then.
    /// </summary>
    [Fact]
    public void ARowsLossDoesNotDependOnHowManyRowsShareItsCall()
    {
        const int n = 2000, v = 27;
        int ld = CpuKernels.Padded(v);
        var logits = Random(n * ld, 13);
        for (int i = 0; i < n; i++)
        {
            for (int k = 0; k < v; k++)
                logits.Span[i * ld + k] *= 6f;
            logits.Span.Slice(i * ld + v, ld - v).Fill(float.NegativeInfinity);
        }
        int[] y = Enumerable.Range(0, n).Select(i => (i * 11) % v).ToArray();

        double[] LossesInCallsOf(int rows)
        {
            var z = new PinnedFloats(n * ld);
            logits.Span.CopyTo(z.Span);
            var loss = new double[n];
            for (int i0 = 0; i0 < n; i0 += rows)
            {
                int m = Math.Min(rows, n - i0);
                CpuKernels.SoftmaxCrossEntropy(z.Ptr + (long)i0 * ld, ld, m, v, y.AsSpan(i0, m),
                    loss.AsSpan(i0, m), 0.5f, gradients: true, preciseExp: false);
            }
            return loss;
        }

        var whole = LossesInCallsOf(64);
        foreach (int rows in new[] { 1, 2, 3, 5, 33 })
        {
            var split = LossesInCallsOf(rows);
            int differ = Enumerable.Range(0, n).Count(i => BitConverter.DoubleToInt64Bits(split[i]) != BitConverter.DoubleToInt64Bits(whole[i]));
            Assert.True(differ == 0, $"{rows} rows to a call: {differ} of {n} row losses differ from 64 to a call");
        }
    }

    /// <summary>With preciseExp (the course preset) every row's loss has the bits of a plain in-order float sum.</summary>
    [Fact]
    public void SoftmaxCrossEntropySumsEachRowInOrderWhenPrecise()
    {
        const bool preciseExp = true;
        const int n = 11, v = 27;
        int ld = CpuKernels.Padded(v);
        var z = Random(n * ld, 12);
        for (int i = 0; i < n; i++)
            z.Span.Slice(i * ld + v, ld - v).Fill(float.NegativeInfinity);
        var logits = z.Span.ToArray();
        int[] y = Enumerable.Range(0, n).Select(i => (i * 5) % v).ToArray();
        var loss = new double[n];

        CpuKernels.SoftmaxCrossEntropy(z.Ptr, ld, n, v, y, loss, 0.5f, gradients: true, preciseExp);

        for (int i = 0; i < n; i++)
        {
            var shifted = new PinnedFloats(ld);
            float max = logits.AsSpan(i * ld, v).ToArray().Max();
            for (int k = 0; k < ld; k++)
                shifted.Span[k] = logits[i * ld + k] - max;
            float target = shifted.Span[y[i]];
            TensorPrimitives.Exp(shifted.Span, shifted.Span);
            float sum = 0f;
            for (int k = 0; k < v; k++)
                sum += shifted.Span[k];
            Assert.Equal((double)(MathF.Log(sum) - target), loss[i]);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(15)]
    [InlineData(64)]
    [InlineData(6752)]
    [InlineData(6761)]
    public void SumOfSquaresMatchesFloat64(int n)
    {
        var x = Random(n + 1, 11);
        x.Span[n] = float.NaN; // past the end
        double want = 0;
        for (int e = 0; e < n; e++)
            want += (double)x.Span[e] * x.Span[e];
        float got = CpuKernels.SumOfSquares(x.Ptr, n);
        Assert.Equal(want, got, want * 1e-5);

        x.Span[n / 2] = float.PositiveInfinity; // the NaN guard's case: a non-finite gradient shows
        Assert.False(float.IsFinite(CpuKernels.SumOfSquares(x.Ptr, n)));
    }
}
