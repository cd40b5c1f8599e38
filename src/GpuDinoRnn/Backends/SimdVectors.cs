// One kernel body for every vector width: the CPU kernels are generic over these three structs,
// and the JIT compiles each instantiation with the width's own instructions. Vector512 where the
// hardware has it, else Vector256, else Vector128; Simd1 is one float, for element-wise tails.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace GpuDinoRnn.Backends;

internal unsafe interface ISimd<TSelf> where TSelf : struct, ISimd<TSelf>
{
    static abstract int Count { get; }
    static abstract TSelf Load(float* p);
    static abstract void Store(TSelf v, float* p);
    static abstract TSelf Broadcast(float x);
    /// <summary>
    /// a·b + c, fused (one rounding) where the hardware has FMA — every AVX2 and ARM64 machine —
    /// and a product then a sum where it does not (emulating FMA there is 150 times slower). Every
    /// tile and tail uses this same operation, so the bits never depend on the tile shape.
    /// </summary>
    static abstract TSelf Fma(TSelf a, TSelf b, TSelf c);
    static abstract TSelf Add(TSelf a, TSelf b);
    static abstract TSelf Subtract(TSelf a, TSelf b);
    static abstract TSelf Multiply(TSelf a, TSelf b);
    static abstract TSelf Divide(TSelf a, TSelf b);
    static abstract TSelf Sqrt(TSelf a);
    /// <summary>x limited to [lo, hi] (Math.Clamp for a number).</summary>
    static abstract TSelf Clamp(TSelf x, TSelf lo, TSelf hi);
    /// <summary>
    /// Clamp for finite x, with the hardware's own min and max (one instruction each, where
    /// Clamp's IEEE rules for NaN and −0 take six); a NaN may come out as a limit.
    /// </summary>
    static abstract TSelf ClampFinite(TSelf x, TSelf lo, TSelf hi);
    static abstract TSelf Max(TSelf a, TSelf b);
    /// <summary>To the nearest integer, ties to even.</summary>
    static abstract TSelf Round(TSelf x);
    /// <summary>2ⁿ for whole numbers n in −126 … 127.</summary>
    static abstract TSelf Pow2(TSelf n);
    /// <summary>value where x ≥ limit (or x is NaN), else 0.</summary>
    static abstract TSelf ZeroBelow(TSelf x, TSelf limit, TSelf value);
    static abstract TSelf Abs(TSelf x);
    /// <summary>value with its sign bit flipped where signOf's is set (value ^ (signOf &amp; −0)).</summary>
    static abstract TSelf FlipSign(TSelf value, TSelf signOf);
    /// <summary>
    /// e^x as the runtime's own vector exp gives it (VectorN.Exp, which TensorPrimitives.Exp uses),
    /// lane for lane: its float exp goes through double, so every width agrees.
    /// </summary>
    static abstract TSelf RuntimeExp(TSelf x);
    /// <summary>The largest lane.</summary>
    static abstract float MaxAcross(TSelf a);
    /// <summary>The sum of the lanes (in the runtime's fixed order for the width).</summary>
    static abstract float SumAcross(TSelf a);
}

internal readonly unsafe struct Simd512(Vector512<float> v) : ISimd<Simd512>
{
    private readonly Vector512<float> _v = v;
    public static int Count => Vector512<float>.Count;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 Load(float* p) => new(Vector512.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Simd512 v, float* p) => v._v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 Broadcast(float x) => new(Vector512.Create(x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 Fma(Simd512 a, Simd512 b, Simd512 c) => new(Vector512.MultiplyAddEstimate(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 Add(Simd512 a, Simd512 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 Subtract(Simd512 a, Simd512 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 Multiply(Simd512 a, Simd512 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 Divide(Simd512 a, Simd512 b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 Sqrt(Simd512 a) => new(Vector512.Sqrt(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 Clamp(Simd512 x, Simd512 lo, Simd512 hi) => new(Vector512.Min(Vector512.Max(x._v, lo._v), hi._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 ClampFinite(Simd512 x, Simd512 lo, Simd512 hi) => new(Vector512.MinNative(Vector512.MaxNative(x._v, lo._v), hi._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 Max(Simd512 a, Simd512 b) => new(Vector512.Max(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 Round(Simd512 x) => new(Vector512.Round(x._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 Pow2(Simd512 n) => new(Vector512.ShiftLeft(Vector512.ConvertToInt32(n._v) + Vector512.Create(127), 23).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 Abs(Simd512 x) => new(Vector512.Abs(x._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 FlipSign(Simd512 value, Simd512 signOf) =>
        new((value._v.AsUInt32() ^ (signOf._v.AsUInt32() & Vector512.Create(0x8000_0000u))).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 RuntimeExp(Simd512 x) => new(PreciseMath.Exp512(x._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 ZeroBelow(Simd512 x, Simd512 limit, Simd512 value) =>
        new(Vector512.ConditionalSelect(Vector512.LessThan(x._v, limit._v), Vector512<float>.Zero, value._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Simd512 a) => Simd256.MaxAcross(new(Vector256.Max(a._v.GetLower(), a._v.GetUpper())));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SumAcross(Simd512 a) => Vector512.Sum(a._v);
}

internal readonly unsafe struct Simd256(Vector256<float> v) : ISimd<Simd256>
{
    private readonly Vector256<float> _v = v;
    public static int Count => Vector256<float>.Count;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 Load(float* p) => new(Vector256.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Simd256 v, float* p) => v._v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 Broadcast(float x) => new(Vector256.Create(x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 Fma(Simd256 a, Simd256 b, Simd256 c) => new(Vector256.MultiplyAddEstimate(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 Add(Simd256 a, Simd256 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 Subtract(Simd256 a, Simd256 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 Multiply(Simd256 a, Simd256 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 Divide(Simd256 a, Simd256 b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 Sqrt(Simd256 a) => new(Vector256.Sqrt(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 Clamp(Simd256 x, Simd256 lo, Simd256 hi) => new(Vector256.Min(Vector256.Max(x._v, lo._v), hi._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 ClampFinite(Simd256 x, Simd256 lo, Simd256 hi) => new(Vector256.MinNative(Vector256.MaxNative(x._v, lo._v), hi._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 Max(Simd256 a, Simd256 b) => new(Vector256.Max(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 Round(Simd256 x) => new(Vector256.Round(x._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 Pow2(Simd256 n) => new(Vector256.ShiftLeft(Vector256.ConvertToInt32(n._v) + Vector256.Create(127), 23).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 Abs(Simd256 x) => new(Vector256.Abs(x._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 FlipSign(Simd256 value, Simd256 signOf) =>
        new((value._v.AsUInt32() ^ (signOf._v.AsUInt32() & Vector256.Create(0x8000_0000u))).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 RuntimeExp(Simd256 x) => new(Vector256.Exp(x._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 ZeroBelow(Simd256 x, Simd256 limit, Simd256 value) =>
        new(Vector256.ConditionalSelect(Vector256.LessThan(x._v, limit._v), Vector256<float>.Zero, value._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Simd256 a) => Simd128.MaxAcross(new(Vector128.Max(a._v.GetLower(), a._v.GetUpper())));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SumAcross(Simd256 a) => Vector256.Sum(a._v);
}

internal readonly unsafe struct Simd128(Vector128<float> v) : ISimd<Simd128>
{
    private readonly Vector128<float> _v = v;
    public static int Count => Vector128<float>.Count;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 Load(float* p) => new(Vector128.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Simd128 v, float* p) => v._v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 Broadcast(float x) => new(Vector128.Create(x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 Fma(Simd128 a, Simd128 b, Simd128 c) => new(Vector128.MultiplyAddEstimate(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 Add(Simd128 a, Simd128 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 Subtract(Simd128 a, Simd128 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 Multiply(Simd128 a, Simd128 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 Divide(Simd128 a, Simd128 b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 Sqrt(Simd128 a) => new(Vector128.Sqrt(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 Clamp(Simd128 x, Simd128 lo, Simd128 hi) => new(Vector128.Min(Vector128.Max(x._v, lo._v), hi._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 ClampFinite(Simd128 x, Simd128 lo, Simd128 hi) => new(Vector128.MinNative(Vector128.MaxNative(x._v, lo._v), hi._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 Max(Simd128 a, Simd128 b) => new(Vector128.Max(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 Round(Simd128 x) => new(Vector128.Round(x._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 Pow2(Simd128 n) => new(Vector128.ShiftLeft(Vector128.ConvertToInt32(n._v) + Vector128.Create(127), 23).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 Abs(Simd128 x) => new(Vector128.Abs(x._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 FlipSign(Simd128 value, Simd128 signOf) =>
        new((value._v.AsUInt32() ^ (signOf._v.AsUInt32() & Vector128.Create(0x8000_0000u))).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 RuntimeExp(Simd128 x) => new(Vector128.Exp(x._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 ZeroBelow(Simd128 x, Simd128 limit, Simd128 value) =>
        new(Vector128.ConditionalSelect(Vector128.LessThan(x._v, limit._v), Vector128<float>.Zero, value._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SumAcross(Simd128 a) => Vector128.Sum(a._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Simd128 a)
    {
        var m = Vector128.Max(a._v, Vector128.Shuffle(a._v, Vector128.Create(2, 3, 0, 1)));
        m = Vector128.Max(m, Vector128.Shuffle(m, Vector128.Create(1, 0, 3, 2)));
        return m.ToScalar();
    }
}

internal readonly unsafe struct Simd1(float v) : ISimd<Simd1>
{
    private readonly float _v = v;
    public static int Count => 1;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd1 Load(float* p) => new(*p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Simd1 v, float* p) => *p = v._v;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd1 Broadcast(float x) => new(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd1 Fma(Simd1 a, Simd1 b, Simd1 c) => new(float.MultiplyAddEstimate(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd1 Add(Simd1 a, Simd1 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd1 Subtract(Simd1 a, Simd1 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd1 Multiply(Simd1 a, Simd1 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd1 Divide(Simd1 a, Simd1 b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd1 Sqrt(Simd1 a) => new(MathF.Sqrt(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd1 Clamp(Simd1 x, Simd1 lo, Simd1 hi) => new(Math.Clamp(x._v, lo._v, hi._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd1 ClampFinite(Simd1 x, Simd1 lo, Simd1 hi) => new(Math.Clamp(x._v, lo._v, hi._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd1 Max(Simd1 a, Simd1 b) => new(MathF.Max(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd1 Round(Simd1 x) => new(MathF.Round(x._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd1 Pow2(Simd1 n) => new(BitConverter.Int32BitsToSingle(((int)n._v + 127) << 23));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd1 Abs(Simd1 x) => new(MathF.Abs(x._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd1 FlipSign(Simd1 value, Simd1 signOf) =>
        new(BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(value._v) ^ (BitConverter.SingleToUInt32Bits(signOf._v) & 0x8000_0000u)));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd1 RuntimeExp(Simd1 x) => new(Vector128.Exp(Vector128.CreateScalar(x._v)).ToScalar()); // a vector lane, not MathF.Exp
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd1 ZeroBelow(Simd1 x, Simd1 limit, Simd1 value) => new(x._v < limit._v ? 0f : value._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Simd1 a) => a._v;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SumAcross(Simd1 a) => a._v;
}
