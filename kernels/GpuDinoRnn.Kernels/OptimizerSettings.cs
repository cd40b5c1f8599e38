// What the fused clip + optimizer update needs for one step, as one struct.
namespace GpuDinoRnn.Kernels;

/// <summary>Update rules; the numbers are what UpdateKernels.Update switches on.</summary>
public enum OptimizerKind
{
    Sgd = 0,
    Momentum = 1,
    Adam = 2,
    AdamW = 3,
    Adagrad = 4,
    RmsProp = 5,
}

/// <summary>
/// One step's update: the learning rate of this step (the schedule is applied on the host), the
/// clipping, and the optimizer's hyper-parameters. Bias1 = 1 − β1ᵗ and Bias2 = 1 − β2ᵗ are Adam's
/// bias corrections for step t, computed on the host.
/// </summary>
public readonly struct OptimizerSettings
{
    public readonly OptimizerKind Kind;
    public readonly float Lr;
    public readonly float Clip;        // ≤ 0: no clipping
    public readonly int NormMode;      // 1: scale by min(1, clip/‖g‖₂); 0: clamp each element
    public readonly float Momentum;    // momentum μ
    public readonly float Beta1;       // Adam β1
    public readonly float Beta2;       // Adam β2; RMSprop's α
    public readonly float Eps;
    public readonly float WeightDecay; // AdamW's decoupled decay
    public readonly float Bias1;
    public readonly float Bias2;

    public OptimizerSettings(OptimizerKind kind, float lr, float clip, int normMode, float momentum, float beta1, float beta2,
        float eps, float weightDecay, float bias1, float bias2)
    {
        Kind = kind;
        Lr = lr;
        Clip = clip;
        NormMode = normMode;
        Momentum = momentum;
        Beta1 = beta1;
        Beta2 = beta2;
        Eps = eps;
        WeightDecay = weightDecay;
        Bias1 = bias1;
        Bias2 = bias2;
    }
}
