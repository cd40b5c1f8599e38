// The matrix kernels under CpuBackend, on raw row-major float pointers with a leading dimension
// (ld) per matrix. Column counts (np) are padded to a multiple of Pad, so there is no ragged column
// tail; with 512-bit vectors a product may end in a vector and a half instead (Columns).
// Each output element is one chain of multiply-adds (ISimd.Fma) in a fixed order whatever tile
// holds it, so a result does not depend on how rows are split among threads. Every kernel is
// compiled optimized at once (AggressiveOptimization): a short run would otherwise spend much of
// its time in unoptimized code, where the generic vector structs are not even inlined.
using System.Diagnostics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GpuDinoRnn.Backends;

internal static unsafe class CpuKernels
{
    /// <summary>Floats per vector on this machine.</summary>
    public static int Lanes => Vector512.IsHardwareAccelerated ? 16 : Vector256.IsHardwareAccelerated ? 8 : 4;

    /// <summary>Whether multiply-adds are fused here (ISimd.Fma): every AVX2 and ARM64 machine.</summary>
    public static bool FusedMultiplyAdd => Fma.IsSupported || System.Runtime.Intrinsics.Arm.AdvSimd.IsSupported;

    /// <summary>Every padded width is a multiple of two vectors: the kernels' narrowest tile.</summary>
    public static int Pad => 2 * Lanes;

    public static int Padded(int n) => PaddedTo(n, Pad);

    /// <summary>
    /// The columns a product computes for n real ones: Padded(n), less the last quarter of the last
    /// tile where that quarter is padding alone and vectors are 512 bits wide. The 4-row tiles then
    /// end in one vector and a half (H 50: 56 columns, not 64), which saves a quarter of the last
    /// tile's multiply-adds on machines that split a 512-bit multiply-add into two 256-bit halves
    /// (AMD Zen 4). Narrower vectors gain nothing from a half-vector tail: there np is Padded(n).
    /// </summary>
    public static int Columns(int n) => Lanes == 16 && Padded(n) - n >= Lanes / 2 ? Padded(n) - Lanes / 2 : Padded(n);

    private static int PaddedTo(int n, int step) => (n + step - 1) / step * step;

    /// <summary>Member m's share [start, end) of a width that is a multiple of Lanes, in whole vectors.</summary>
    public static (int Start, int End) VectorShare(int member, int members, int width)
    {
        int vectors = width / Lanes;
        return (vectors * member / members * Lanes, vectors * (member + 1) / members * Lanes);
    }

    /// <summary>
    /// C (n × np) += L (n × k) · R (k × np), for np = Padded(cols) or Columns(cols). Rows that do not
    /// fill a 4-row tile are computed up to Padded(np) (at batch 1 each step waits on the previous
    /// one, and the extra columns cost nothing), so R's columns np … Padded(np) must be zero there:
    /// C's keep their values.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddProduct(float* c, int ldc, float* l, int ldl, float* r, int ldr, int n, int k, int np)
    {
        Debug.Assert(np == Padded(np) || np == Columns(np));
        if (Vector512.IsHardwareAccelerated)
            AddProduct<Simd512>(c, ldc, l, ldl, r, ldr, n, k, np);
        else if (Vector256.IsHardwareAccelerated)
            AddProduct<Simd256>(c, ldc, l, ldl, r, ldr, n, k, np);
        else
            AddProduct<Simd128>(c, ldc, l, ldl, r, ldr, n, k, np);
    }

    /// <summary>
    /// Rows m0 ≤ m &lt; m1 of C (· × np) += Lᵀ · R for L (n × ·) and R (n × np): C[m] += Σ_i L[i][m] R[i].
    /// np is Padded(cols) or Columns(cols); as in AddProduct, rows that do not fill a 4-row tile
    /// are computed up to Padded(np), where R must be zero.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddTransposedProduct(float* c, int ldc, int m0, int m1, float* l, int ldl, float* r, int ldr, int n, int np)
    {
        Debug.Assert(np == Padded(np) || np == Columns(np));
        // In blocks of input rows whose share of R (about 128 KB) stays in the L2 cache while every
        // tile of C streams through it; each sum still runs over the rows in order, so the bits
        // do not change.
        int block = Math.Max(64, 32768 / Math.Max(ldr, ldl));
        for (int i0 = 0; i0 < n; i0 += block)
        {
            int rows = Math.Min(block, n - i0);
            float* li = l + (long)i0 * ldl, ri = r + (long)i0 * ldr;
            if (Vector512.IsHardwareAccelerated)
                AddTransposedProduct<Simd512>(c, ldc, m0, m1, li, ldl, ri, ldr, rows, np);
            else if (Vector256.IsHardwareAccelerated)
                AddTransposedProduct<Simd256>(c, ldc, m0, m1, li, ldl, ri, ldr, rows, np);
            else
                AddTransposedProduct<Simd128>(c, ldc, m0, m1, li, ldl, ri, ldr, rows, np);
        }
    }

    /// <summary>dst (cols × ·)[j][i] = src (rows × ·)[i][j] for i &lt; rows, j &lt; cols; nothing else is written.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Transpose(float* src, int lds, float* dst, int ldd, int rows, int cols)
    {
        // Whole 8 × 8 blocks in AVX registers (the copies are refreshed after every update, which
        // at batch 1 is every few dozen characters); the edges, and machines without AVX, one by one.
        int rows8 = Avx.IsSupported ? rows / 8 * 8 : 0, cols8 = Avx.IsSupported ? cols / 8 * 8 : 0;
        for (int i0 = 0; i0 < rows8; i0 += 8)
            for (int j0 = 0; j0 < cols8; j0 += 8)
                Transpose8(src + (long)i0 * lds + j0, lds, 8, dst + (long)j0 * ldd + i0, ldd);
        TransposeOneByOne(src, lds, dst, ldd, 0, rows8, cols8, cols);
        TransposeOneByOne(src, lds, dst, ldd, rows8, rows, 0, cols);
    }

    /// <summary>Rounds up to the transposes' block size.</summary>
    public static int Blocks8(int n) => (n + 7) / 8 * 8;

    /// <summary>
    /// Transpose in whole 8 × 8 blocks, for the backends' padded copies refreshed after every
    /// update: dst[j][i] = src[i][j] for i &lt; Blocks8(rows), j &lt; Blocks8(cols), where the missing
    /// source rows (rows … Blocks8(rows) − 1) read as zeros and are never touched. So the source
    /// must have Blocks8(cols) columns (its padding), and dst Blocks8(cols) rows of at least
    /// Blocks8(rows) columns. Without AVX, Transpose does the rows × cols part alone.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void TransposeBlocks(float* src, int lds, float* dst, int ldd, int rows, int cols)
    {
        if (!Avx.IsSupported)
        {
            Transpose(src, lds, dst, ldd, rows, cols);
            return;
        }
        for (int i0 = 0; i0 < rows; i0 += 8)
            for (int j0 = 0; j0 < cols; j0 += 8)
                Transpose8(src + (long)i0 * lds + j0, lds, Math.Min(8, rows - i0), dst + (long)j0 * ldd + i0, ldd);
    }

    private static void TransposeOneByOne(float* src, int lds, float* dst, int ldd, int i0, int i1, int j0, int j1)
    {
        for (int i = i0; i < i1; i++)
        {
            float* s = src + (long)i * lds;
            for (int j = j0; j < j1; j++)
                dst[(long)j * ldd + i] = s[j];
        }
    }

    /// <summary>
    /// One 8 × 8 block of which the first `present` rows exist (the others read as zeros): pairs of
    /// rows interleaved, then pairs of pairs, then the 128-bit halves swapped.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8(float* s, int lds, int present, float* d, int ldd)
    {
        Vector256<float> r0 = Row(s, lds, 0, present), r1 = Row(s, lds, 1, present), r2 = Row(s, lds, 2, present), r3 = Row(s, lds, 3, present);
        Vector256<float> r4 = Row(s, lds, 4, present), r5 = Row(s, lds, 5, present), r6 = Row(s, lds, 6, present), r7 = Row(s, lds, 7, present);
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5);
        var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7);
        var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44);
        var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44);
        var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44);
        var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44);
        var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(d, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(d + ldd, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(d + 2 * ldd, Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(d + 3 * ldd, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(d + 4 * ldd, Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(d + 5 * ldd, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(d + 6 * ldd, Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(d + 7 * ldd, Avx.Permute2x128(u3, u7, 0x31));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Row(float* s, int lds, int r, int present) =>
        r < present ? Avx.LoadVector256(s + (long)r * lds) : Vector256<float>.Zero;

    /// <summary>dst = a + b over n floats, n a multiple of the vector width.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Add(float* a, float* b, float* dst, int n)
    {
        if (Vector512.IsHardwareAccelerated)
            Add<Simd512>(a, b, dst, n);
        else if (Vector256.IsHardwareAccelerated)
            Add<Simd256>(a, b, dst, n);
        else
            Add<Simd128>(a, b, dst, n);
    }

    /// <summary>
    /// Σ x² over n floats: four vector sums, their lanes, then the tail, in a fixed order.
    /// (TensorPrimitives.SumOfSquares took 8 µs here for 6,752 floats just written by the step,
    /// ten times this loop; on its own it is as fast.)
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float SumOfSquares(float* x, int n)
    {
        if (Vector512.IsHardwareAccelerated)
            return SumOfSquares<Simd512>(x, n);
        if (Vector256.IsHardwareAccelerated)
            return SumOfSquares<Simd256>(x, n);
        return SumOfSquares<Simd128>(x, n);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float SumOfSquares<TV>(float* x, int n) where TV : struct, ISimd<TV>
    {
        int w = TV.Count, e = 0;
        TV s0 = TV.Broadcast(0f), s1 = s0, s2 = s0, s3 = s0;
        for (; e + 4 * w <= n; e += 4 * w)
        {
            TV a = TV.Load(x + e), b = TV.Load(x + e + w), c = TV.Load(x + e + 2 * w), d = TV.Load(x + e + 3 * w);
            s0 = TV.Fma(a, a, s0);
            s1 = TV.Fma(b, b, s1);
            s2 = TV.Fma(c, c, s2);
            s3 = TV.Fma(d, d, s3);
        }
        for (; e + w <= n; e += w)
        {
            TV a = TV.Load(x + e);
            s0 = TV.Fma(a, a, s0);
        }
        float* lanes = stackalloc float[w];
        TV.Store(TV.Add(TV.Add(s0, s1), TV.Add(s2, s3)), lanes);
        float sum = 0f;
        for (int i = 0; i < w; i++)
            sum += lanes[i];
        for (; e < n; e++)
            sum += x[e] * x[e];
        return sum;
    }

    /// <summary>x = e^x over n floats (FastMath.Exp).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Exp(float* x, int n)
    {
        int e = 0;
        if (Vector512.IsHardwareAccelerated)
            e = Exp<Simd512>(x, 0, n);
        else if (Vector256.IsHardwareAccelerated)
            e = Exp<Simd256>(x, 0, n);
        else
            e = Exp<Simd128>(x, 0, n);
        Exp<Simd1>(x, e, n);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Exp<TV>(float* x, int e, int n) where TV : struct, ISimd<TV>
    {
        for (; e + TV.Count <= n; e += TV.Count)
            TV.Store(FastMath.Exp(TV.Load(x + e)), x + e);
        return e;
    }

    /// <summary>x = tanh(x) over n floats (FastMath.Tanh: tanh(0) is exactly 0, so padding stays 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Tanh(float* x, int n)
    {
        int e = 0;
        if (Vector512.IsHardwareAccelerated)
            e = Tanh<Simd512>(x, 0, n);
        else if (Vector256.IsHardwareAccelerated)
            e = Tanh<Simd256>(x, 0, n);
        else
            e = Tanh<Simd128>(x, 0, n);
        Tanh<Simd1>(x, e, n);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Tanh<TV>(float* x, int e, int n) where TV : struct, ISimd<TV>
    {
        for (; e + TV.Count <= n; e += TV.Count)
            TV.Store(FastMath.Tanh(TV.Load(x + e)), x + e);
        return e;
    }

    /// <summary>
    /// x = tanh(x) over n floats, bit for bit as TensorPrimitives.Tanh gives them (PreciseMath), the
    /// last vector overlapping as in the library; below one vector, the library itself (it works
    /// element by element there).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PreciseTanh(float* x, int n)
    {
        if (Vector512.IsHardwareAccelerated && n >= Simd512.Count)
            PreciseTanh<Simd512>(x, n);
        else if (Vector256.IsHardwareAccelerated && n >= Simd256.Count)
            PreciseTanh<Simd256>(x, n);
        else if (Vector128.IsHardwareAccelerated && n >= Simd128.Count)
            PreciseTanh<Simd128>(x, n);
        else
            TensorPrimitives.Tanh(new ReadOnlySpan<float>(x, n), new Span<float>(x, n));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PreciseTanh<TV>(float* x, int n) where TV : struct, ISimd<TV>
    {
        TV last = PreciseMath.Tanh(TV.Load(x + n - TV.Count)); // before the loop overwrites its start
        for (int e = 0; e + TV.Count <= n; e += TV.Count)
            TV.Store(PreciseMath.Tanh(TV.Load(x + e)), x + e);
        TV.Store(last, x + n - TV.Count);
    }

    /// <summary>x = e^x over n floats, n a multiple of the vector width, bit for bit as TensorPrimitives.Exp gives them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PreciseExp(float* x, int n)
    {
        if (Vector512.IsHardwareAccelerated)
            PreciseExp<Simd512>(x, n);
        else if (Vector256.IsHardwareAccelerated)
            PreciseExp<Simd256>(x, n);
        else
            PreciseExp<Simd128>(x, n);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PreciseExp<TV>(float* x, int n) where TV : struct, ISimd<TV>
    {
        for (int e = 0; e < n; e += TV.Count)
            TV.Store(TV.RuntimeExp(TV.Load(x + e)), x + e);
    }

    /// <summary>dz ⊙= 1 − a² over n floats (tanh′ from its output), n a multiple of the vector width.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void MultiplyByTanhDerivative(float* dz, float* a, int n)
    {
        if (Vector512.IsHardwareAccelerated)
            MultiplyByTanhDerivative<Simd512>(dz, a, n);
        else if (Vector256.IsHardwareAccelerated)
            MultiplyByTanhDerivative<Simd256>(dz, a, n);
        else
            MultiplyByTanhDerivative<Simd128>(dz, a, n);
    }

    /// <summary>Rows whose logs SoftmaxCrossEntropy takes in one call (outside the course preset).</summary>
    private const int LogBlock = 64;

    /// <summary>
    /// Compiles TensorPrimitives.Log's code for every length SoftmaxCrossEntropy can give it: the
    /// library compiles a path per kind of length (short, whole vectors, a tail) on first use, and
    /// a run meets them all in its first steps (9 ms at H 50, B 1).
    /// </summary>
    public static void CompileSoftmaxLogs()
    {
        Span<float> ones = stackalloc float[LogBlock], logs = stackalloc float[LogBlock];
        ones.Fill(1f);
        for (int n = 1; n <= LogBlock; n++)
            TensorPrimitives.Log(ones[..n], logs[..n]);
    }

    /// <summary>
    /// Softmax cross-entropy on n rows of v logits (row stride ld, a multiple of two vectors; columns
    /// v … ld−1 hold −∞ and come out 0): rowLoss[i] = log Σ exp z − z[y[i]], and, with
    /// gradients, each row becomes dLoss/dz · scale = (softmax − onehot(y)) · scale. preciseExp:
    /// TensorPrimitives' exp (PreciseExp) instead of FastMath's (TrainOptions.PreciseMath).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SoftmaxCrossEntropy(float* z, int ld, int n, int v, ReadOnlySpan<int> y, Span<double> rowLoss, float scale, bool gradients, bool preciseExp)
    {
        if (Vector512.IsHardwareAccelerated)
            SoftmaxCrossEntropy<Simd512>(z, ld, n, v, y, rowLoss, scale, gradients, preciseExp);
        else if (Vector256.IsHardwareAccelerated)
            SoftmaxCrossEntropy<Simd256>(z, ld, n, v, y, rowLoss, scale, gradients, preciseExp);
        else
            SoftmaxCrossEntropy<Simd128>(z, ld, n, v, y, rowLoss, scale, gradients, preciseExp);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SoftmaxCrossEntropy<TV>(float* z, int ld, int n, int v, ReadOnlySpan<int> y, Span<double> rowLoss, float scale, bool gradients, bool preciseExp)
        where TV : struct, ISimd<TV>
    {
        int w = TV.Count;
        for (int i = 0; i < n; i++)
        {
            float* row = z + (long)i * ld;
            TV top = TV.Load(row);
            for (int c = w; c < ld; c += w)
                top = TV.Max(top, TV.Load(row + c));
            TV max = TV.Broadcast(TV.MaxAcross(top));
            for (int c = 0; c < ld; c += w)
                TV.Store(TV.Subtract(TV.Load(row + c), max), row + c);
            rowLoss[i] = row[y[i]]; // z_target − max, until log Σ exp is known
        }
        // The −∞ padding becomes 0.
        if (preciseExp)
            PreciseExp(z, n * ld);
        else
            Exp(z, n * ld);
        // Each row's Σ exp: for the course preset (preciseExp) in order, one by one, as its printed
        // losses depend on these bits; otherwise in vectors (the padding is 0), with the logs taken
        // a block of rows at a time.
        float* sums = stackalloc float[LogBlock], logs = stackalloc float[LogBlock];
        for (int i0 = 0; i0 < n; i0 += LogBlock)
        {
            int m = Math.Min(LogBlock, n - i0);
            for (int i = 0; i < m; i++)
            {
                float* row = z + (long)(i0 + i) * ld;
                if (preciseExp)
                {
                    float sum = 0f;
                    for (int k = 0; k < v; k++)
                        sum += row[k];
                    sums[i] = sum;
                    logs[i] = MathF.Log(sum);
                    continue;
                }
                TV s = TV.Load(row);
                for (int c = w; c < ld; c += w)
                    s = TV.Add(s, TV.Load(row + c));
                sums[i] = TV.SumAcross(s);
            }
            if (!preciseExp)
            {
                // Below 4 floats TensorPrimitives.Log is the scalar MathF.Log, whose bits differ
                // from its vector code's now and then, and how many rows a call gets depends on how
                // the rows were shared among threads: so every call gets at least 4 (log 1 = 0).
                int k = Math.Max(m, 4);
                for (int i = m; i < k; i++)
                    sums[i] = 1f;
                TensorPrimitives.Log(new ReadOnlySpan<float>(sums, k), new Span<float>(logs, k));
            }
            for (int i = 0; i < m; i++)
            {
                float* row = z + (long)(i0 + i) * ld;
                rowLoss[i0 + i] = logs[i] - (float)rowLoss[i0 + i];
                if (!gradients)
                    continue;
                TV by = TV.Broadcast(scale / sums[i]);
                for (int c = 0; c < ld; c += w)
                    TV.Store(TV.Multiply(TV.Load(row + c), by), row + c);
                row[y[i0 + i]] -= scale;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AddProduct<TV>(float* c, int ldc, float* l, int ldl, float* r, int ldr, int n, int k, int np)
        where TV : struct, ISimd<TV>
    {
        int w = TV.Count;
        int padded = PaddedTo(np, 2 * w);
        int row = 0;
        // 4 rows × 2 vectors: each R load feeds four rows.
        for (; row + 4 <= n; row += 4)
        {
            float* l0 = l + (long)row * ldl, l1 = l0 + ldl, l2 = l1 + ldl, l3 = l2 + ldl;
            int col = 0;
            for (; col + 2 * w <= np; col += 2 * w)
            {
                float* c0 = c + (long)row * ldc + col, c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc;
                TV a00 = TV.Load(c0), a01 = TV.Load(c0 + w), a10 = TV.Load(c1), a11 = TV.Load(c1 + w);
                TV a20 = TV.Load(c2), a21 = TV.Load(c2 + w), a30 = TV.Load(c3), a31 = TV.Load(c3 + w);
                float* rk = r + col;
                for (int j = 0; j < k; j++, rk += ldr)
                {
                    TV r0 = TV.Load(rk), r1 = TV.Load(rk + w);
                    TV x = TV.Broadcast(l0[j]);
                    a00 = TV.Fma(x, r0, a00);
                    a01 = TV.Fma(x, r1, a01);
                    x = TV.Broadcast(l1[j]);
                    a10 = TV.Fma(x, r0, a10);
                    a11 = TV.Fma(x, r1, a11);
                    x = TV.Broadcast(l2[j]);
                    a20 = TV.Fma(x, r0, a20);
                    a21 = TV.Fma(x, r1, a21);
                    x = TV.Broadcast(l3[j]);
                    a30 = TV.Fma(x, r0, a30);
                    a31 = TV.Fma(x, r1, a31);
                }
                TV.Store(a00, c0);
                TV.Store(a01, c0 + w);
                TV.Store(a10, c1);
                TV.Store(a11, c1 + w);
                TV.Store(a20, c2);
                TV.Store(a21, c2 + w);
                TV.Store(a30, c3);
                TV.Store(a31, c3 + w);
            }
            if (col < np) // np ends in a vector and a half (Columns, 512-bit vectors only)
                Tile4By1Half(c + (long)row * ldc + col, ldc, l + (long)row * ldl, ldl, 1, r + col, ldr, k);
        }
        // Two rows left (each step of a batch leaves 0 to 3): 4 vectors where they fit, so each R
        // load still feeds two chains of eight.
        for (; row + 2 <= n; row += 2)
        {
            float* l0 = l + (long)row * ldl, l1 = l0 + ldl;
            float* c0 = c + (long)row * ldc, c1 = c0 + ldc;
            int col = 0;
            for (; col + 4 * w <= padded; col += 4 * w)
            {
                TV a00 = TV.Load(c0 + col), a01 = TV.Load(c0 + col + w), a02 = TV.Load(c0 + col + 2 * w), a03 = TV.Load(c0 + col + 3 * w);
                TV a10 = TV.Load(c1 + col), a11 = TV.Load(c1 + col + w), a12 = TV.Load(c1 + col + 2 * w), a13 = TV.Load(c1 + col + 3 * w);
                float* rk = r + col;
                for (int j = 0; j < k; j++, rk += ldr)
                {
                    TV r0 = TV.Load(rk), r1 = TV.Load(rk + w), r2 = TV.Load(rk + 2 * w), r3 = TV.Load(rk + 3 * w);
                    TV x = TV.Broadcast(l0[j]);
                    a00 = TV.Fma(x, r0, a00);
                    a01 = TV.Fma(x, r1, a01);
                    a02 = TV.Fma(x, r2, a02);
                    a03 = TV.Fma(x, r3, a03);
                    x = TV.Broadcast(l1[j]);
                    a10 = TV.Fma(x, r0, a10);
                    a11 = TV.Fma(x, r1, a11);
                    a12 = TV.Fma(x, r2, a12);
                    a13 = TV.Fma(x, r3, a13);
                }
                TV.Store(a00, c0 + col);
                TV.Store(a01, c0 + col + w);
                TV.Store(a02, c0 + col + 2 * w);
                TV.Store(a03, c0 + col + 3 * w);
                TV.Store(a10, c1 + col);
                TV.Store(a11, c1 + col + w);
                TV.Store(a12, c1 + col + 2 * w);
                TV.Store(a13, c1 + col + 3 * w);
            }
            for (; col < padded; col += 2 * w)
            {
                TV a00 = TV.Load(c0 + col), a01 = TV.Load(c0 + col + w), a10 = TV.Load(c1 + col), a11 = TV.Load(c1 + col + w);
                float* rk = r + col;
                for (int j = 0; j < k; j++, rk += ldr)
                {
                    TV r0 = TV.Load(rk), r1 = TV.Load(rk + w);
                    TV x = TV.Broadcast(l0[j]);
                    a00 = TV.Fma(x, r0, a00);
                    a01 = TV.Fma(x, r1, a01);
                    x = TV.Broadcast(l1[j]);
                    a10 = TV.Fma(x, r0, a10);
                    a11 = TV.Fma(x, r1, a11);
                }
                TV.Store(a00, c0 + col);
                TV.Store(a01, c0 + col + w);
                TV.Store(a10, c1 + col);
                TV.Store(a11, c1 + col + w);
            }
        }
        // Single rows (batch 1 is all single rows).
        for (; row < n; row++)
            SingleRow<TV>(c + (long)row * ldc, l + (long)row * ldl, 1, r, ldr, k, padded);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AddTransposedProduct<TV>(float* c, int ldc, int m0, int m1, float* l, int ldl, float* r, int ldr, int n, int np)
        where TV : struct, ISimd<TV>
    {
        int w = TV.Count;
        int padded = PaddedTo(np, 2 * w);
        int m = m0;
        // 4 output rows × 2 vectors, summed over the n input rows in order.
        for (; m + 4 <= m1; m += 4)
        {
            int col = 0;
            for (; col + 2 * w <= np; col += 2 * w)
            {
                float* c0 = c + (long)m * ldc + col, c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc;
                TV a00 = TV.Load(c0), a01 = TV.Load(c0 + w), a10 = TV.Load(c1), a11 = TV.Load(c1 + w);
                TV a20 = TV.Load(c2), a21 = TV.Load(c2 + w), a30 = TV.Load(c3), a31 = TV.Load(c3 + w);
                float* li = l + m;
                float* ri = r + col;
                for (int i = 0; i < n; i++, li += ldl, ri += ldr)
                {
                    TV r0 = TV.Load(ri), r1 = TV.Load(ri + w);
                    TV x = TV.Broadcast(li[0]);
                    a00 = TV.Fma(x, r0, a00);
                    a01 = TV.Fma(x, r1, a01);
                    x = TV.Broadcast(li[1]);
                    a10 = TV.Fma(x, r0, a10);
                    a11 = TV.Fma(x, r1, a11);
                    x = TV.Broadcast(li[2]);
                    a20 = TV.Fma(x, r0, a20);
                    a21 = TV.Fma(x, r1, a21);
                    x = TV.Broadcast(li[3]);
                    a30 = TV.Fma(x, r0, a30);
                    a31 = TV.Fma(x, r1, a31);
                }
                TV.Store(a00, c0);
                TV.Store(a01, c0 + w);
                TV.Store(a10, c1);
                TV.Store(a11, c1 + w);
                TV.Store(a20, c2);
                TV.Store(a21, c2 + w);
                TV.Store(a30, c3);
                TV.Store(a31, c3 + w);
            }
            if (col < np) // np ends in a vector and a half (Columns, 512-bit vectors only)
                Tile4By1Half(c + (long)m * ldc + col, ldc, l + m, 1, ldl, r + col, ldr, n);
        }
        // Single output rows.
        for (; m < m1; m++)
            SingleRow<TV>(c + (long)m * ldc, l + m, ldl, r, ldr, n, padded);
    }

    /// <summary>
    /// One row of C (np columns, a multiple of two vectors) += Σ_j l[j·step]·R[j] over the k rows
    /// of R (ldr apart), in order: the lone rows of both products (AddProduct: a row of L, step 1;
    /// AddTransposedProduct: a column of L, step ldl). 4 vectors where they fit, for four FMA chains.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SingleRow<TV>(float* c, float* l, int step, float* r, int ldr, int k, int np)
        where TV : struct, ISimd<TV>
    {
        int w = TV.Count;
        int col = 0;
        for (; col + 4 * w <= np; col += 4 * w)
        {
            TV a0 = TV.Load(c + col), a1 = TV.Load(c + col + w), a2 = TV.Load(c + col + 2 * w), a3 = TV.Load(c + col + 3 * w);
            float* lj = l;
            float* rj = r + col;
            for (int j = 0; j < k; j++, lj += step, rj += ldr)
            {
                TV x = TV.Broadcast(*lj);
                a0 = TV.Fma(x, TV.Load(rj), a0);
                a1 = TV.Fma(x, TV.Load(rj + w), a1);
                a2 = TV.Fma(x, TV.Load(rj + 2 * w), a2);
                a3 = TV.Fma(x, TV.Load(rj + 3 * w), a3);
            }
            TV.Store(a0, c + col);
            TV.Store(a1, c + col + w);
            TV.Store(a2, c + col + 2 * w);
            TV.Store(a3, c + col + 3 * w);
        }
        for (; col < np; col += 2 * w)
        {
            TV a0 = TV.Load(c + col), a1 = TV.Load(c + col + w);
            float* lj = l;
            float* rj = r + col;
            for (int j = 0; j < k; j++, lj += step, rj += ldr)
            {
                TV x = TV.Broadcast(*lj);
                a0 = TV.Fma(x, TV.Load(rj), a0);
                a1 = TV.Fma(x, TV.Load(rj + w), a1);
            }
            TV.Store(a0, c + col);
            TV.Store(a1, c + col + w);
        }
    }

    /// <summary>
    /// C (4 × 24, rows ldc apart) += L · R (k × 24) for the 4 × k matrix L whose element (q, j) is
    /// l[q·rowStep + j·step]: the last tile of a product whose width is Columns(n), one 512-bit and
    /// one 256-bit vector per row. Each 256-bit multiply-add takes half a 512-bit one's share of the
    /// two FMA pipes on Zen 4, so this tile costs 3/4 of a full one; the 256-bit half reuses the
    /// lower half of the 512-bit broadcast (a register broadcast is a shuffle, and shuffles share a
    /// pipe with the multiply-adds). Sums run over j in order, as in every other tile.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Tile4By1Half(float* c, int ldc, float* l, int rowStep, int step, float* r, int ldr, int k)
    {
        float* c0 = c, c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc;
        Vector512<float> a00 = Vector512.Load(c0), a10 = Vector512.Load(c1), a20 = Vector512.Load(c2), a30 = Vector512.Load(c3);
        Vector256<float> a01 = Vector256.Load(c0 + 16), a11 = Vector256.Load(c1 + 16), a21 = Vector256.Load(c2 + 16), a31 = Vector256.Load(c3 + 16);
        float* l0 = l, l1 = l0 + rowStep, l2 = l1 + rowStep, l3 = l2 + rowStep;
        for (int j = 0; j < k; j++, r += ldr)
        {
            var r0 = Vector512.Load(r);
            var r1 = Vector256.Load(r + 16);
            long e = (long)j * step;
            var x = Vector512.Create(l0[e]);
            a00 = Vector512.MultiplyAddEstimate(x, r0, a00);
            a01 = Vector256.MultiplyAddEstimate(x.GetLower(), r1, a01);
            x = Vector512.Create(l1[e]);
            a10 = Vector512.MultiplyAddEstimate(x, r0, a10);
            a11 = Vector256.MultiplyAddEstimate(x.GetLower(), r1, a11);
            x = Vector512.Create(l2[e]);
            a20 = Vector512.MultiplyAddEstimate(x, r0, a20);
            a21 = Vector256.MultiplyAddEstimate(x.GetLower(), r1, a21);
            x = Vector512.Create(l3[e]);
            a30 = Vector512.MultiplyAddEstimate(x, r0, a30);
            a31 = Vector256.MultiplyAddEstimate(x.GetLower(), r1, a31);
        }
        a00.Store(c0);
        a01.Store(c0 + 16);
        a10.Store(c1);
        a11.Store(c1 + 16);
        a20.Store(c2);
        a21.Store(c2 + 16);
        a30.Store(c3);
        a31.Store(c3 + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Add<TV>(float* a, float* b, float* dst, int n) where TV : struct, ISimd<TV>
    {
        for (int e = 0; e < n; e += TV.Count)
            TV.Store(TV.Add(TV.Load(a + e), TV.Load(b + e)), dst + e);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MultiplyByTanhDerivative<TV>(float* dz, float* a, int n) where TV : struct, ISimd<TV>
    {
        TV one = TV.Broadcast(1f);
        for (int e = 0; e < n; e += TV.Count)
        {
            TV an = TV.Load(a + e);
            // A product, then a difference (not fused): rounded like 1f - a * a.
            TV derivative = TV.Subtract(one, TV.Multiply(an, an));
            TV.Store(TV.Multiply(TV.Load(dz + e), derivative), dz + e);
        }
    }
}
