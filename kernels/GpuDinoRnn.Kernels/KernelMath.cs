// tanh for the kernels. ILGPU compiles XMath.Tanh to CUDA's tanh.approx.f32 from sm_75 on (about
// 2⁻¹¹ relative error, where the cpu backend is within 7 ulp): a GPU would then train measurably
// apart from the cpu backend. This is the cpu backend's own approximation (FastMath.Tanh) in
// scalar arithmetic, the same on every backend.
namespace GpuDinoRnn.Kernels;

public static class KernelMath
{
    /// <summary>
    /// Eigen's rational approximation, as FastMath.Tanh: the input clamped where tanh rounds to ±1,
    /// an odd degree-13 polynomial over an even degree-6 one. A NaN stays NaN (the clamp compares,
    /// where a hardware min or max would turn it into a limit).
    /// </summary>
    public static float Tanh(float x)
    {
        const float Limit = 7.90531110763549805f;
        if (x > Limit)
            x = Limit;
        else if (x < -Limit)
            x = -Limit;
        float x2 = x * x;
        float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
        p = x2 * p + -8.60467152213735e-11f;
        p = x2 * p + 5.12229709037114e-08f;
        p = x2 * p + 1.48572235717979e-05f;
        p = x2 * p + 6.37261928875436e-04f;
        p = x2 * p + 4.89352455891786e-03f;
        p = x * p;
        float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
        q = x2 * q + 2.26843463243900e-03f;
        q = x2 * q + 4.89352518554385e-03f;
        return p / q;
    }
}
