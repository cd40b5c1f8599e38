// tanh for the kernels. ILGPU compiles XMath.Tanh to CUDA's tanh.approx.f32 from sm_75 on (about
// 2⁻¹¹ relative error, where the cpu backend is within 7 ulp), which would likely move a GPU's
// training off the cpu backend's. This is the cpu backend's own approximation (FastMath.Tanh) in
// scalar arithmetic, the same on every backend.
namespace GpuDinoRnn.Kernels;

public static class KernelMath
{
    // The approximation's constants, here and in FastMath.Tanh: where tanh rounds to ±1 in float,
    // then the numerator's coefficients (x·(P6 + x²·(P5 + …))) and the denominator's.
    public const float TanhLimit = 7.90531110763549805f;
    public const float TanhP0 = -2.76076847742355e-16f, TanhP1 = 2.00018790482477e-13f, TanhP2 = -8.60467152213735e-11f;
    public const float TanhP3 = 5.12229709037114e-08f, TanhP4 = 1.48572235717979e-05f, TanhP5 = 6.37261928875436e-04f;
    public const float TanhP6 = 4.89352455891786e-03f;
    public const float TanhQ0 = 1.19825839466702e-06f, TanhQ1 = 1.18534705686654e-04f, TanhQ2 = 2.26843463243900e-03f;
    public const float TanhQ3 = 4.89352518554385e-03f;

    /// <summary>
    /// Eigen's rational approximation, as FastMath.Tanh: the input clamped where tanh rounds to ±1,
    /// an odd degree-13 polynomial over an even degree-6 one. A NaN stays NaN (the clamp compares,
    /// where a hardware min or max would turn it into a limit).
    /// </summary>
    public static float Tanh(float x)
    {
        if (x > TanhLimit)
            x = TanhLimit;
        else if (x < -TanhLimit)
            x = -TanhLimit;
        float x2 = x * x;
        float p = x2 * TanhP0 + TanhP1;
        p = x2 * p + TanhP2;
        p = x2 * p + TanhP3;
        p = x2 * p + TanhP4;
        p = x2 * p + TanhP5;
        p = x2 * p + TanhP6;
        p = x * p;
        float q = x2 * TanhQ0 + TanhQ1;
        q = x2 * q + TanhQ2;
        q = x2 * q + TanhQ3;
        return p / q;
    }
}
