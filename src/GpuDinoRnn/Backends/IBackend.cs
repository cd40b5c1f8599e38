// What a device does for the trainer: a whole training step on a batch, evaluation, and
// parameter transfer. The trainer never touches device memory itself.
using GpuDinoRnn.Data;
using GpuDinoRnn.Model;

namespace GpuDinoRnn.Backends;

public enum ClipMode
{
    /// <summary>Each gradient element clamped to [−c, c] (the course's).</summary>
    Value,
    /// <summary>All gradients scaled by min(1, c/‖g‖₂) over every tensor together.</summary>
    Norm,
}

/// <param name="LearningRate">SGD step size.</param>
/// <param name="Clip">Clip threshold c; 0 disables clipping.</param>
/// <param name="ClipMode">Element-wise or global-norm clipping.</param>
/// <param name="CarryState">Start from the previous step's final hidden state (batch 1 only) instead of zeros.</param>
public readonly record struct StepSettings(float LearningRate, float Clip, ClipMode ClipMode, bool CarryState);

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
}
