// The same training job timed on each device: cold start (context + kernel compilation)
// separately, then a warm-up, then N timed repetitions from the same initial weights over the
// same batches. Reading the losses back waits for the device, so each timing covers all the
// device's work and nothing else (no compilation, no transfers but the per-step batch upload).
using System.Diagnostics;
using GpuDinoRnn.Backends;
using GpuDinoRnn.Data;
using GpuDinoRnn.Model;

namespace GpuDinoRnn.Training;

/// <param name="Steps">Timed training steps per repetition.</param>
/// <param name="WarmUp">Untimed steps first (JIT, caches, GPU clocks).</param>
public sealed record BenchJob(
    int Hidden = 128, int Batch = 32, int Steps = 50, int WarmUp = 5, int Repetitions = 5, int Seed = 1,
    int Threads = 0, string? Data = null, Kernels.CellKind Cell = Kernels.CellKind.Rnn, int Layers = 1)
{
    public void Validate()
    {
        if (Hidden < 1 || Batch < 1 || Steps < 1 || WarmUp < 0 || Repetitions < 1 || Threads < 0)
            throw new UserError("bench: --hidden, --batch, --steps and --repetitions must be at least 1, --warm-up and --threads at least 0");
        if (Layers is < 1 or > ModelShape.MaxLayers)
            throw new UserError($"bench: --layers must be between 1 and {ModelShape.MaxLayers} (got {Layers})");
    }

    /// <summary>The job for messages: "H 128, B 32" or "lstm × 2, H 128, B 32".</summary>
    public string Describe() =>
        (Cell == Kernels.CellKind.Rnn && Layers == 1 ? "" : $"{CellNames.Of(Cell)} × {Layers}, ") + $"H {Hidden}, B {Batch}";
}

/// <param name="SecondsPerRepetition">Wall time of each timed repetition.</param>
/// <param name="FinalLoss">The last step's loss: equal across devices up to rounding, or a device is wrong.</param>
public sealed record BenchResult(
    string DeviceId, string Device, double ColdStartSeconds, double[] SecondsPerRepetition, int Steps,
    long CharsPerRepetition, int LaunchesPerStep, float FinalLoss)
{
    public double MedianMsPerStep => Median(SecondsPerRepetition) * 1000 / Steps;
    public double MinMsPerStep => SecondsPerRepetition.Min() * 1000 / Steps;
    public double MaxMsPerStep => SecondsPerRepetition.Max() * 1000 / Steps;
    public double CharsPerSecond => CharsPerRepetition / Median(SecondsPerRepetition);

    private static double Median(double[] x)
    {
        var s = x.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }
}

public static class Benchmark
{
    /// <summary>Usable device ids for "all" (every usable device, the ILGPU CPU emulator included) or a comma list.</summary>
    public static IReadOnlyList<string> Select(string devices, int threads) =>
        devices.Trim().Equals("all", StringComparison.OrdinalIgnoreCase)
            ? Devices.List(threads).Where(d => d.Usable).Select(d => d.Id).ToList()
            : devices.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    public static BenchResult Run(string deviceId, BenchJob job, Action<string>? log = null)
    {
        job.Validate();
        int threads = job.Threads > 0 ? job.Threads : Environment.ProcessorCount;
        var dataset = Dataset.Load(job.Data ?? Trainer.BundledData);
        var vocab = Vocabulary.FromNames(dataset.Names);
        var names = dataset.Names.Select(vocab.Encode).ToList();
        var batcher = new Batcher(names, job.Batch, ShuffleMode.Epoch, job.Seed);
        var warmUp = Enumerable.Range(0, job.WarmUp).Select(_ => batcher.Next()).ToList();
        var batches = Enumerable.Range(0, job.Steps).Select(_ => batcher.Next()).ToList();
        long chars = batches.Sum(b => (long)b.Chars);
        var shape = new ModelShape(job.Hidden, vocab.Size, job.Cell, job.Layers);
        var initial = Parameters.Initialize(shape, InitScheme.Small, job.Seed);
        var settings = new StepSettings(0.01f, 5f, ClipMode.Value, CarryState: false);

        var clock = Stopwatch.StartNew();
        using var backend = Devices.Create(deviceId, shape, threads, log);
        double coldStart = clock.Elapsed.TotalSeconds;

        backend.Upload(initial);
        foreach (var batch in warmUp)
            backend.Step(batch, settings);
        backend.TakeLosses();
        var seconds = new double[job.Repetitions];
        float finalLoss = float.NaN;
        for (int r = 0; r < job.Repetitions; r++)
        {
            backend.Upload(initial); // a blocking copy: nothing is in flight when the clock starts
            clock.Restart();
            foreach (var batch in batches)
                backend.Step(batch, settings);
            var losses = backend.TakeLosses();
            seconds[r] = clock.Elapsed.TotalSeconds;
            finalLoss = losses[^1];
        }
        return new BenchResult(deviceId, backend.Device, coldStart, seconds, job.Steps, chars, backend.LaunchesPerStep, finalLoss);
    }
}
