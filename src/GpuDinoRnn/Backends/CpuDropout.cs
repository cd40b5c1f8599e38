// DropoutMask's hash (SplitMix64's finaliser of the row key and the unit) in 64-bit vector lanes,
// for the cpu backends: the same bits as DropoutMask.Factor, unit for unit, 8 units at a time
// with AVX-512 (its 64-bit multiply, vpmullq) or 4 with AVX2. One multiply-by-mask per unit was
// an eighth of `--preset quality`'s time as scalar code.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using GpuDinoRnn.Kernels;

namespace GpuDinoRnn.Backends;

internal static unsafe class CpuDropout
{
    /// <summary>row[i] *= DropoutMask.Factor(p, rowKey, i) for i &lt; n (p &gt; 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Apply(float* row, int n, ulong rowKey, float p)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated && Avx512DQ.IsSupported)
            i = Apply512(row, n, rowKey, p);
        else if (Vector256.IsHardwareAccelerated)
            i = Apply256(row, n, rowKey, p);
        for (; i < n; i++)
            row[i] *= DropoutMask.Factor(p, rowKey, i);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Apply512(float* row, int n, ulong rowKey, float p)
    {
        var key = Vector512.Create(rowKey);
        var unit = Vector512.Create(0UL, 1, 2, 3, 4, 5, 6, 7);
        var limit = Vector512.Create(p);
        var keep = Vector512.Create(1f / (1f - p));
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            var lo = Mix(key ^ (unit + Vector512.Create((ulong)i)));
            var hi = Mix(key ^ (unit + Vector512.Create((ulong)i + 8)));
            // The 24 high bits (< 2^24, so int → float is exact), scaled by 2^-24 as Factor does.
            var bits = Vector512.Narrow(Vector512.ShiftRightLogical(lo, 40), Vector512.ShiftRightLogical(hi, 40)).AsInt32();
            var u = Vector512.ConvertToSingle(bits) * (1f / 16777216f);
            var factor = Vector512.ConditionalSelect(Vector512.LessThan(u, limit), Vector512<float>.Zero, keep);
            (Vector512.Load(row + i) * factor).Store(row + i);
        }
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Apply256(float* row, int n, ulong rowKey, float p)
    {
        var key = Vector256.Create(rowKey);
        var unit = Vector256.Create(0UL, 1, 2, 3);
        var limit = Vector256.Create(p);
        var keep = Vector256.Create(1f / (1f - p));
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var lo = Mix(key ^ (unit + Vector256.Create((ulong)i)));
            var hi = Mix(key ^ (unit + Vector256.Create((ulong)i + 4)));
            var bits = Vector256.Narrow(Vector256.ShiftRightLogical(lo, 40), Vector256.ShiftRightLogical(hi, 40)).AsInt32();
            var u = Vector256.ConvertToSingle(bits) * (1f / 16777216f);
            var factor = Vector256.ConditionalSelect(Vector256.LessThan(u, limit), Vector256<float>.Zero, keep);
            (Vector256.Load(row + i) * factor).Store(row + i);
        }
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<ulong> Mix(Vector512<ulong> z)
    {
        z += Vector512.Create(0x9E3779B97F4A7C15UL);
        z = (z ^ Vector512.ShiftRightLogical(z, 30)) * Vector512.Create(0xBF58476D1CE4E5B9UL);
        z = (z ^ Vector512.ShiftRightLogical(z, 27)) * Vector512.Create(0x94D049BB133111EBUL);
        return z ^ Vector512.ShiftRightLogical(z, 31);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<ulong> Mix(Vector256<ulong> z)
    {
        z += Vector256.Create(0x9E3779B97F4A7C15UL);
        z = (z ^ Vector256.ShiftRightLogical(z, 30)) * Vector256.Create(0xBF58476D1CE4E5B9UL);
        z = (z ^ Vector256.ShiftRightLogical(z, 27)) * Vector256.Create(0x94D049BB133111EBUL);
        return z ^ Vector256.ShiftRightLogical(z, 31);
    }
}
