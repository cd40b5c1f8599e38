// What a device does for the trainer: a whole training step on a batch, evaluation, and
// parameter transfer. The trainer never touches device memory itself.
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;

namespace GpuDinoRnn.Backends;

public enum ClipMode
{
    /// <summary>Each gradient element clamped to [−c, c] (the course's).</summary>
    Value,
    /// <summary>All gradients scaled by min(1, c/‖g‖₂) over every tensor together.</summary>
    Norm,
}

/// <param name="LearningRate">This step's learning rate (after any schedule).</param>
/// <param name="Clip">Clip threshold c; 0 disables clipping.</param>
/// <param name="ClipMode">Element-wise or global-norm clipping.</param>
/// <param name="CarryState">Start each name (stream) b from the final state of name b of the previous step instead of zeros.</param>
/// <param name="Optimizer">The update rule; null is plain SGD.</param>
public readonly record struct StepSettings(float LearningRate, float Clip, ClipMode ClipMode, bool CarryState, OptimizerConfig? Optimizer = null)
{
    /// <summary>The kernels' settings for update number t (1-based; Adam's bias correction needs it).</summary>
    public OptimizerSettings ForUpdate(long t)
    {
        var o = Optimizer ?? OptimizerConfig.Sgd;
        float beta2 = o.Kind == OptimizerKind.RmsProp ? o.Alpha : o.Beta2;
        return new OptimizerSettings(o.Kind, LearningRate, Clip, ClipMode == ClipMode.Norm ? 1 : 0, o.Momentum, o.Beta1, beta2, o.Eps,
            o.WeightDecay, 1f - MathF.Pow(o.Beta1, t), 1f - MathF.Pow(o.Beta2, t));
    }
}

/// <summary>An update rule and its hyper-parameters (the usual defaults of PyTorch).</summary>
/// <param name="Alpha">RMSprop's smoothing constant.</param>
public sealed record OptimizerConfig(
    OptimizerKind Kind = OptimizerKind.Sgd, float Momentum = 0.9f, float Beta1 = 0.9f, float Beta2 = 0.999f, float Eps = 1e-8f,
    float WeightDecay = 0.01f, float Alpha = 0.99f)
{
    public static readonly OptimizerConfig Sgd = new();

    /// <summary>Whether the rule keeps per-parameter state (m and v) that a resumed run needs.</summary>
    public bool HasState => Kind != OptimizerKind.Sgd;
}

/// <summary>
/// Dropout on every layer's output (between stacked layers and before the output layer) while
/// training; Rate 0 turns it off. The mask of update n is a hash of (Seed, n, layer, t, b, unit):
/// see DropoutMask.
/// </summary>
public readonly record struct DropoutConfig(float Rate, int Seed)
{
    public static readonly DropoutConfig Off = new(0f, 0);

    /// <summary>The kernels' settings for update number n (1-based).</summary>
    public Kernels.DropoutSettings ForUpdate(long n) => new(Rate, unchecked((uint)Seed), unchecked((uint)n));
}

/// <summary>What an exact resume needs from the device besides the weights.</summary>
/// <param name="Updates">Updates applied so far (Adam's t).</param>
/// <param name="M">First moments, in the parameters' layout.</param>
/// <param name="V">Second moments, in the parameters' layout.</param>
/// <param name="Carry">The carried states (names × ModelShape.StateSize: each layer's h, then its c for the LSTM), empty when nothing is carried.</param>
public sealed record BackendState(long Updates, float[] M, float[] V, float[] Carry);

public interface IBackend : IDisposable
{
    /// <summary>Which device runs the work, for logs (e.g. "cpu (2 threads)").</summary>
    string Device { get; }

    /// <summary>Kernel launches (and device copies) in the last step; 0 for the managed CPU backend.</summary>
    int LaunchesPerStep { get; }

    ModelShape Shape { get; }

    void Upload(Parameters parameters);

    void Download(Parameters parameters);

    /// <summary>Forward, loss, backpropagation through time, clipping and SGD update, on the device.</summary>
    void Step(Batch batch, StepSettings settings);

    /// <summary>
    /// The mean loss per name (nats, summed over each name's steps) of every step since the last
    /// call, in order. Reading it is the only time a step's results leave the device.
    /// </summary>
    float[] TakeLosses();

    /// <summary>Loss and gradients of a batch without updating (fresh or carried state as given); for tests and checks.</summary>
    float Gradients(Batch batch, bool carryState, Span<float> gradients);

    /// <summary>The summed loss in nats over every real character of the batch, from a zero state.</summary>
    double EvaluateSum(Batch batch);

    /// <summary>Forget the carried hidden state (zeros).</summary>
    void ResetState();

    /// <summary>‖g‖₂ of the last step's gradient, before clipping (read at log time, not per step).</summary>
    float LastGradientNorm();

    /// <summary>The last step's gradient, in the parameters' layout (to say which tensor went non-finite).</summary>
    void DownloadGradients(Span<float> gradients);

    /// <summary>Optimizer moments, update count and carried state, for a checkpoint.</summary>
    BackendState SaveState();

    /// <summary>Puts back what SaveState returned (a resumed run).</summary>
    void LoadState(BackendState state);
}
