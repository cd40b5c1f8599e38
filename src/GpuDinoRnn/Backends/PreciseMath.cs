// TensorPrimitives' tanh and exp (the course preset's, TrainOptions.PreciseMath) written out inline,
// bit for bit: the library's calls cost a third of a course step at batch 1, mostly in calls and
// per-span set-up around a few vectors. PreciseMathTests compares them with TensorPrimitives.
// Exp512 restates .NET 10's VectorMath.ExpSingle (MIT licence), itself a port of AMD's aocl-libm
// vrs4_expf (BSD-3-Clause), operation for operation: the same bits need the same operations.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace GpuDinoRnn.Backends;

internal static class PreciseMath
{
    /// <summary>
    /// TensorPrimitives.Tanh's vector formula, operation for operation: with e = e^(−2|x|) − 1,
    /// tanh x = −e / (e + 2) with x's sign.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Tanh<TV>(TV x) where TV : struct, ISimd<TV>
    {
        TV e = TV.Subtract(TV.RuntimeExp(TV.Multiply(TV.Broadcast(-2f), TV.Abs(x))), TV.Broadcast(1f));
        TV minusE = TV.Multiply(e, TV.Broadcast(-1f)); // exactly −e (0 − e would turn −0 into +0)
        return TV.FlipSign(TV.Divide(minusE, TV.Add(e, TV.Broadcast(2f))), x);
    }

    /// <summary>
    /// Vector512.Exp for floats as .NET 10 computes it (VectorMath.ExpSingle, after AMD's
    /// vrs4_expf), inlined: each half widened to double, x/ln 2 = n + r with n whole, 2^r by a
    /// degree-5 polynomial, n added to the exponent bits; overflow to ∞ and underflow to 0 last.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp512(Vector512<float> x)
    {
        var result = Vector512.Narrow(Exp2Core(Vector512.WidenLower(x)), Exp2Core(Vector512.WidenUpper(x)));
        if (Vector512.GreaterThanAny(Vector512.Abs(x).AsUInt32(), Vector512.Create(0x42AE_0000u))) // |x| > 87
        {
            result = Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512.Create(88.72284f)),
                Vector512.Create(float.PositiveInfinity), result);
            result = Vector512.AndNot(result, Vector512.LessThan(x, Vector512.Create(-103.97208f)));
        }
        return result;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<double> Exp2Core(Vector512<double> x)
    {
        var shift = Vector512.Create(6755399441055744.0); // 1.5 · 2⁵²: adding it rounds to a whole number
        var z = x * Vector512.Create(1.4426950408889634);
        var zs = z + shift;
        var r = z - (zs - shift);
        var r2 = r * r;
        var p = Vector512.MultiplyAddEstimate(r2 * r2,
            Vector512.MultiplyAddEstimate(Vector512.Create(0.001341000536524434), r, Vector512.Create(0.009676036358193323)),
            Vector512.MultiplyAddEstimate(r2,
                Vector512.MultiplyAddEstimate(Vector512.Create(0.05550297297702539), r, Vector512.Create(0.2402210737432219)),
                Vector512.MultiplyAddEstimate(Vector512.Create(0.6931472254087585), r, Vector512.Create(1.0000000754895704))));
        return (p.AsUInt64() + (zs.AsUInt64() << 52)).AsDouble();
    }
}
