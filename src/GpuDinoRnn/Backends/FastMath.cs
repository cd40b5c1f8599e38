// tanh and exp in float arithmetic for the cpu backends, one generic body for every vector width
// and for single floats (Simd1), so a value does not depend on where in a row it falls.
// TensorPrimitives' tanh and exp go through double precision: at H 50 they were a third of a
// training step.
using System.Runtime.CompilerServices;
using GpuDinoRnn.Kernels;

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
        // The constants are KernelMath's: the GPU kernels run this approximation too.
        x = TV.Clamp(x, TV.Broadcast(-KernelMath.TanhLimit), TV.Broadcast(KernelMath.TanhLimit));
        TV x2 = TV.Multiply(x, x);
        TV p = TV.Fma(x2, TV.Broadcast(KernelMath.TanhP0), TV.Broadcast(KernelMath.TanhP1));
        p = TV.Fma(x2, p, TV.Broadcast(KernelMath.TanhP2));
        p = TV.Fma(x2, p, TV.Broadcast(KernelMath.TanhP3));
        p = TV.Fma(x2, p, TV.Broadcast(KernelMath.TanhP4));
        p = TV.Fma(x2, p, TV.Broadcast(KernelMath.TanhP5));
        p = TV.Fma(x2, p, TV.Broadcast(KernelMath.TanhP6));
        p = TV.Multiply(x, p);
        TV q = TV.Fma(x2, TV.Broadcast(KernelMath.TanhQ0), TV.Broadcast(KernelMath.TanhQ1));
        q = TV.Fma(x2, q, TV.Broadcast(KernelMath.TanhQ2));
        q = TV.Fma(x2, q, TV.Broadcast(KernelMath.TanhQ3));
        return TV.Divide(p, q);
    }

    /// <summary>
    /// e^x for x ≤ 88 (the softmax's inputs are ≤ 0): x = n·ln 2 + r with |r| ≤ ln 2 / 2 (ln 2 in
    /// two parts, Cody and Waite), e^r by Cephes' degree-6 polynomial, times 2ⁿ. Within 2 ulp
    /// (FastMathTests); 0 below −87.3 (where e^x is no longer a normal float), so −∞ gives 0; NaN
    /// stays NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Exp<TV>(TV x) where TV : struct, ISimd<TV>
    {
        TV low = TV.Broadcast(-87.33654f);
        TV xc = TV.Clamp(x, low, TV.Broadcast(88f));
        TV n = TV.Round(TV.Multiply(xc, TV.Broadcast(1.44269504088896341f)));
        TV r = TV.Fma(n, TV.Broadcast(-0.693359375f), xc);
        r = TV.Fma(n, TV.Broadcast(2.12194440e-4f), r);
        TV p = TV.Fma(TV.Broadcast(1.9875691500e-4f), r, TV.Broadcast(1.3981999507e-3f));
        p = TV.Fma(p, r, TV.Broadcast(8.3334519073e-3f));
        p = TV.Fma(p, r, TV.Broadcast(4.1665795894e-2f));
        p = TV.Fma(p, r, TV.Broadcast(1.6666665459e-1f));
        p = TV.Fma(p, r, TV.Broadcast(5.0000001201e-1f));
        p = TV.Add(TV.Fma(p, TV.Multiply(r, r), r), TV.Broadcast(1f));
        return TV.ZeroBelow(x, low, TV.Multiply(p, TV.Pow2(n)));
    }
}
