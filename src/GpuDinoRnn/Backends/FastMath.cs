// tanh in float arithmetic for the cpu backends, one generic body for every vector width and for
// single floats (Simd1), so a value does not depend on where in a row it falls. TensorPrimitives'
// tanh goes through a double-precision exp and was a third of a training step at H 50.
using System.Runtime.CompilerServices;

namespace GpuDinoRnn.Backends;

internal static class FastMath
{
    /// <summary>
    /// Eigen's rational approximation (odd degree-13 over even degree-6 polynomial, the input
    /// clamped where tanh rounds to ±1): at most 7 ulp from the true value (FastMathTests), exactly
    /// 0 at 0, odd, and never beyond ±1.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Tanh<TV>(TV x) where TV : struct, ISimd<TV>
    {
        const float Limit = 7.90531110763549805f;
        x = TV.Clamp(x, TV.Broadcast(-Limit), TV.Broadcast(Limit));
        TV x2 = TV.Multiply(x, x);
        TV p = TV.Fma(x2, TV.Broadcast(-2.76076847742355e-16f), TV.Broadcast(2.00018790482477e-13f));
        p = TV.Fma(x2, p, TV.Broadcast(-8.60467152213735e-11f));
        p = TV.Fma(x2, p, TV.Broadcast(5.12229709037114e-08f));
        p = TV.Fma(x2, p, TV.Broadcast(1.48572235717979e-05f));
        p = TV.Fma(x2, p, TV.Broadcast(6.37261928875436e-04f));
        p = TV.Fma(x2, p, TV.Broadcast(4.89352455891786e-03f));
        p = TV.Multiply(x, p);
        TV q = TV.Fma(x2, TV.Broadcast(1.19825839466702e-06f), TV.Broadcast(1.18534705686654e-04f));
        q = TV.Fma(x2, q, TV.Broadcast(2.26843463243900e-03f));
        q = TV.Fma(x2, q, TV.Broadcast(4.89352518554385e-03f));
        return TV.Divide(p, q);
    }
}
