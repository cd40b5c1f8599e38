// The learning rate of each iteration: a linear warm-up, then constant, step decay or cosine
// decay. Computed on the host and passed to the update kernel as a number: nothing is read back.
namespace GpuDinoRnn.Training;

public enum LrScheduleKind
{
    Constant,
    Step,
    Cosine,
}

/// <param name="Warmup">Iterations of linear warm-up from lr/warmup to lr.</param>
/// <param name="StepEvery">Step decay: multiply by Gamma every this many iterations after warm-up.</param>
/// <param name="MinLr">Cosine decay: the learning rate at the last iteration.</param>
public sealed record LrSchedule(LrScheduleKind Kind, float Lr, int Warmup, int Total, int StepEvery, float Gamma, float MinLr)
{
    public float At(int iteration)
    {
        if (iteration < Warmup)
            return Lr * (iteration + 1) / Warmup;
        int t = iteration - Warmup;
        return Kind switch
        {
            LrScheduleKind.Step => Lr * MathF.Pow(Gamma, t / Math.Max(1, StepEvery)),
            LrScheduleKind.Cosine => MinLr + 0.5f * (Lr - MinLr) * (1 + MathF.Cos(MathF.PI * Math.Min(1f, t / (float)Math.Max(1, Total - Warmup - 1)))),
            _ => Lr,
        };
    }
}
