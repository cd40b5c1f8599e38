// The same training job timed on each device: cold start (context + kernel compilation)
// separately, then a warm-up, then N timed repetitions from the same initial weights over the
// same batches. Reading the losses back waits for the device, so each timing covers all the
// device's work and nothing else (no compilation, no transfers but the per-step batch upload).
// The devices take turns, one repetition each per round (each round starting one further down
// the list): a shared or virtual machine's speed drifts from one second to the next, and
// devices timed in turn see the same drift, so their ratios hold where back-to-back runs' did not.
using System.Diagnostics;
using System.Text.Json.Serialization;
using GpuDinoRnn.Backends;
using GpuDinoRnn.Data;
using GpuDinoRnn.Model;

namespace GpuDinoRnn.Training;

/// <param name="Steps">Timed training steps per repetition.</param>
/// <param name="WarmUp">Untimed steps first (JIT, caches, GPU clocks).</param>
/// <param name="Threads">Thread counts for cpu and ilgpu-cpu, each timed at every one (empty or 0: all cores).</param>
public sealed record BenchJob(
    int Hidden = 128, int Batch = 32, int Steps = 50, int WarmUp = 5, int Repetitions = 5, int Seed = 1,
    IReadOnlyList<int>? Threads = null, string? Data = null, Kernels.CellKind Cell = Kernels.CellKind.Rnn, int Layers = 1)
{
    /// <summary>The thread counts asked for, 0 (all cores) where none were.</summary>
    [JsonIgnore]
    public IReadOnlyList<int> ThreadCounts => Threads is { Count: > 0 } t ? t : [0];

    public void Validate()
    {
        if (Hidden < 1 || Batch < 1 || Steps < 1 || WarmUp < 0 || Repetitions < 1 || ThreadCounts.Any(t => t < 0))
            throw new UserError("bench: --hidden, --batch, --steps and --repetitions must be at least 1, --warm-up and --threads at least 0");
        if (Hidden > ModelShape.MaxHidden)
            throw new UserError($"bench: --hidden must be between 1 and {ModelShape.MaxHidden} (got {Hidden})");
        if (Layers is < 1 or > ModelShape.MaxLayers)
            throw new UserError($"bench: --layers must be between 1 and {ModelShape.MaxLayers} (got {Layers})");
        if (Data is not null && string.IsNullOrWhiteSpace(Data))
            throw new UserError("bench: --data needs a file name");
    }

    /// <summary>The job for messages: "H 128, B 32" or "lstm × 2, H 128, B 32".</summary>
    public string Describe() =>
        (Cell == Kernels.CellKind.Rnn && Layers == 1 ? "" : $"{CellNames.Of(Cell)} × {Layers}, ") + $"H {Hidden}, B {Batch}";
}

/// <param name="Threads">The threads it ran on (cpu and ilgpu-cpu; null for a GPU).</param>
/// <param name="SecondsPerRepetition">Wall time of each timed repetition.</param>
/// <param name="StartPerRepetition">When each began, in seconds from the first repetition of the run (any device's).</param>
/// <param name="FinalLoss">The last step's loss: equal across devices up to rounding, or a device is wrong.</param>
public sealed record BenchResult(
    string DeviceId, int? Threads, string Device, double ColdStartSeconds, double[] SecondsPerRepetition, double[] StartPerRepetition, int Steps,
    long CharsPerRepetition, int LaunchesPerStep, float FinalLoss)
{
    /// <summary>The device id, and its threads where it has them: "cpu (2 threads)", "cuda:0".</summary>
    public string Label => Describe(DeviceId, Threads);

    internal static string Describe(string deviceId, int? threads) =>
        threads is { } t ? $"{deviceId} ({t} thread{(t == 1 ? "" : "s")})" : deviceId;

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
    public static IReadOnlyList<string> Select(string devices, int threads)
    {
        if (devices.Trim().Equals("all", StringComparison.OrdinalIgnoreCase))
            return Devices.List(threads).Where(d => d.Usable).Select(d => d.Id).ToList();
        // Ids as `devices` lists them (an index, "CPU" or auto without a GPU is "cpu"; cuda is cuda:0), so that the
        // table finds cpu and a device is not timed twice under two names.
        var named = devices.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (named.Length > 1 && named.Any(id => id.Equals("all", StringComparison.OrdinalIgnoreCase)))
            throw new UserError($"bench: --devices '{devices}': all is every device already; give it alone, or a list without it");
        var ids = named.Select(id => Devices.Resolve(id, threads)).ToList();
        if (ids.Count == 0)
            throw new UserError("bench: --devices names no device (give all, or a list such as cpu,cuda)");
        if (ids.GroupBy(id => id).FirstOrDefault(g => g.Count() > 1) is { } twice)
            throw new UserError($"bench: --devices names {twice.Key} twice (for several thread counts give --threads 1,2)");
        return ids;
    }

    /// <summary>
    /// Times the job on every device (cpu and ilgpu-cpu at each of the job's thread counts), the
    /// devices taking turns a repetition at a time; log gets a line as each device starts and after
    /// each round. Results come in the order of deviceIds.
    /// </summary>
    public static IReadOnlyList<BenchResult> Run(IReadOnlyList<string> deviceIds, BenchJob job, Action<string>? log = null)
    {
        job.Validate();
        var dataset = Dataset.Load(job.Data ?? Trainer.BundledData);
        var vocab = Vocabulary.FromNames(dataset.Names);
        var names = dataset.Names.Select(vocab.Encode).ToList();
        var batcher = new Batcher(names, job.Batch, ShuffleMode.Epoch, job.Seed);
        var warmUp = Enumerable.Range(0, job.WarmUp).Select(_ => batcher.Next()).ToList();
        var batches = Enumerable.Range(0, job.Steps).Select(_ => batcher.Next()).ToList();
        var shape = new ModelShape(job.Hidden, vocab.Size, job.Cell, job.Layers);
        shape.CheckSize();
        var initial = Parameters.Initialize(shape, InitScheme.Small, job.Seed);

        var contenders = new List<Contender>();
        string? current = null; // the device being started or timed, for a failure's message
        try
        {
            foreach (string id in deviceIds)
            {
                // A GPU (or an index or auto, which may be cpu: its name will say) takes the first count.
                foreach (int asked in HostThreads(id) ? job.ThreadCounts : job.ThreadCounts.Take(1))
                {
                    int requested = asked > 0 ? asked : Environment.ProcessorCount;
                    // cpu runs on at most the cores (Devices.Create says so); ilgpu-cpu on as many as asked.
                    int? threads = !HostThreads(id) ? null : IsCpu(id) ? Devices.CpuThreads(requested, null) : requested;
                    current = BenchResult.Describe(id, threads);
                    log?.Invoke($"{current}: {job.Describe()}, {job.Steps} steps × {job.Repetitions}");
                    contenders.Add(Contender.Start(id, requested, threads, shape, initial, warmUp, job.Repetitions, log));
                }
            }
            var run = Stopwatch.StartNew();
            for (int r = 0; r < job.Repetitions; r++)
            {
                var times = new string[contenders.Count];
                for (int k = 0; k < contenders.Count; k++)
                {
                    int c = (r + k) % contenders.Count;
                    current = contenders[c].Label;
                    times[c] = $"{contenders[c].Label} {contenders[c].Time(r, initial, warmUp, batches, run) * 1000 / job.Steps:F3}";
                }
                log?.Invoke($"round {r + 1} of {job.Repetitions} (ms/step): {string.Join(", ", times)}");
            }
            long chars = batches.Sum(b => (long)b.Chars);
            return contenders.Select(c => c.Result(job.Steps, chars)).ToList();
        }
        catch (Exception e) when (Devices.Failed(e))
        {
            throw new UserError($"bench: {current} failed: {Devices.Reason(e)}; leave it out of --devices, or try --device cpu",
                UserError.DeviceError, e);
        }
        finally
        {
            foreach (var c in contenders)
                c.Dispose();
        }
    }

    /// <summary>Devices that run on the host's cores, timed at each thread count asked for.</summary>
    private static bool HostThreads(string id) => IsCpu(id) || id.Trim().Equals("ilgpu-cpu", StringComparison.OrdinalIgnoreCase);

    private static bool IsCpu(string id) => id.Trim().Equals("cpu", StringComparison.OrdinalIgnoreCase);

    /// <summary>One device of the comparison: started (the cold start) and warmed up, then timed a repetition at a time.</summary>
    private sealed class Contender : IDisposable
    {
        private static readonly StepSettings Settings = new(0.01f, 5f, ClipMode.Value, CarryState: false);
        private readonly string _id;
        private readonly int? _threads;
        private readonly IBackend _backend;
        private readonly double _coldStart;
        private readonly double[] _seconds, _starts;
        private float _finalLoss = float.NaN;

        private Contender(string id, int? threads, IBackend backend, double coldStart, int repetitions)
        {
            (_id, _threads, _backend, _coldStart) = (id, threads, backend, coldStart);
            _seconds = new double[repetitions];
            _starts = new double[repetitions];
        }

        public string Label => BenchResult.Describe(_id, _threads);

        /// <param name="requested">The threads asked for; threads: those it runs on, for the table (null: a GPU).</param>
        public static Contender Start(string id, int requested, int? threads, ModelShape shape, Parameters initial, List<Batch> warmUp,
            int repetitions, Action<string>? log)
        {
            var clock = Stopwatch.StartNew();
            var backend = Devices.Create(id, shape, requested, log);
            var contender = new Contender(id, threads, backend, clock.Elapsed.TotalSeconds, repetitions);
            try
            {
                backend.Upload(initial);
                foreach (var batch in warmUp)
                    backend.Step(batch, Settings);
                backend.TakeLosses();
                return contender;
            }
            catch
            {
                backend.Dispose();
                throw;
            }
        }

        /// <summary>Repetition r: the steps from the initial weights; returns its seconds.</summary>
        public double Time(int r, Parameters initial, List<Batch> warmUp, List<Batch> batches, Stopwatch run)
        {
            // The device before may have left cpu threads spinning (they block after SpinTime), and
            // this one's may be asleep, its caches cold or its GPU clocked down: both settle untimed.
            Thread.Sleep(2 * CpuTeam.SpinTime);
            if (warmUp.Count > 0)
            {
                _backend.Step(warmUp[0], Settings);
                _backend.TakeLosses();
            }
            _backend.Upload(initial); // a blocking copy: nothing is in flight when the clock starts
            _starts[r] = run.Elapsed.TotalSeconds;
            var clock = Stopwatch.StartNew();
            foreach (var batch in batches)
                _backend.Step(batch, Settings);
            var losses = _backend.TakeLosses();
            _seconds[r] = clock.Elapsed.TotalSeconds;
            _finalLoss = losses[^1];
            return _seconds[r];
        }

        public BenchResult Result(int steps, long chars)
        {
            // The cpu backend names its threads; the ILGPU emulator's name does not.
            string device = _threads is { } t && !IsCpu(_id) ? $"{_backend.Device}, {t} thread{(t == 1 ? "" : "s")}" : _backend.Device;
            return new(_id, _threads, device, _coldStart, _seconds, _starts, steps, chars, _backend.LaunchesPerStep, _finalLoss);
        }

        public void Dispose() => _backend.Dispose();
    }
}
