// The training loop, the only place that knows data, backend, checkpoints and sampling together.
// Reads top-down: build, loop { step; every N log; every M sample; every K checkpoint }, summary.
using System.Diagnostics;
using System.Globalization;
using GpuDinoRnn.Backends;
using GpuDinoRnn.Checkpoints;
using GpuDinoRnn.Data;
using GpuDinoRnn.Model;
using GpuDinoRnn.Sampling;

namespace GpuDinoRnn.Training;

/// <summary>Where a run is, for a progress display: called after every step.</summary>
/// <param name="MeanLoss">Mean loss per name over the last logging interval (NaN before the first).</param>
public readonly record struct TrainProgress(int Iteration, int Total, double MeanLoss, double CharsPerSecond);

/// <param name="Interrupted">Stopped early by the cancellation token (Ctrl-C); Iterations says how far it got.</param>
public sealed record TrainResult(
    string Device, int Iterations, long Chars, double TrainSeconds, double SmoothedLoss,
    double TrainBitsPerChar, double? ValBitsPerChar, float[] Losses, Parameters Parameters, Vocabulary Vocabulary,
    bool Interrupted = false);

public sealed class Trainer(TrainOptions options, TextWriter stdout, TextWriter stderr)
{
    /// <summary>The recipe's smoothing of the reported loss.</summary>
    public const double Smoothing = 0.999;

    private readonly TrainLog _log = new(options.LogFormat, stdout, stderr);
    private int _lastCheckpoint = -1; // iteration of the last checkpoint this run wrote
    private KeyValuePair<string, string>[] _namesMetadata = [];

    /// <summary>Names stored in checkpoints (for sample --novel) when they take less than this.</summary>
    public const int MaxStoredNamesChars = 1 << 20;

    /// <summary>Where the bundled names live: next to the program.</summary>
    public static string BundledData => Path.Combine(AppContext.BaseDirectory, "data", "dinos.txt");

    /// <param name="backendOverride">Use this backend instead of the one --device names.</param>
    /// <param name="cancel">Stops training after the current step; the run then ends as usual (checkpoint, summary).</param>
    /// <param name="progress">Told after every step (for a progress bar); null for none.</param>
    public TrainResult Run(IBackend? backendOverride = null, CancellationToken cancel = default, Action<TrainProgress>? progress = null)
    {
        options.Validate();
        using var target = options.Checkpoint is null ? null : CheckpointTarget.Claim(options.Checkpoint, options.Overwrite);
        var dataset = Dataset.Load(options.Data ?? BundledData, options.KeepCase, options.MaxNameLength);
        var (trainNames, valNames) = dataset.Split(options.ValFraction, options.Seed);
        LoadedModel? init = options.Init is null ? null : Checkpoint.Load(options.Init);
        var vocab = init?.Vocabulary ?? Vocabulary.FromNames(dataset.Names);
        if (vocab.Size > options.MaxVocab)
            throw new UserError($"data: '{dataset.Source}' holds {vocab.Size - 1} distinct symbols, more than --max-vocab {options.MaxVocab}: is it a list of names?");
        if (init is not null)
        {
            var dataVocab = Vocabulary.FromNames(dataset.Names);
            if (!dataVocab.SameAs(vocab))
                throw new UserError($"--init '{options.Init}' has vocabulary {vocab.Display()} but the data '{dataset.Source}' has {dataVocab.Display()}");
        }
        var train = trainNames.Select(vocab.Encode).ToList();
        if (dataset.Names.Sum(n => n.Length + 1) <= MaxStoredNamesChars)
            _namesMetadata = [new("names", string.Join('\n', dataset.Names))];
        var val = valNames.Select(vocab.Encode).ToList();
        var shape = new ModelShape(init?.Parameters.Shape.H ?? options.Hidden, vocab.Size);
        var parameters = init?.Parameters ?? Parameters.Initialize(shape, options.InitScheme, options.Seed);

        var coldStart = Stopwatch.StartNew();
        using var backend = backendOverride ?? Devices.Create(options.Device, shape, options.Threads, _log.Info);
        backend.Upload(parameters);
        _log.Info($"device {backend.Device}; {train.Count} training names, {val.Count} validation; V = {vocab.Size}, H = {shape.H}, " +
                  $"B = {options.Batch}; ready in {coldStart.Elapsed.TotalSeconds:F2} s");

        var batcher = new Batcher(train, options.Batch, options.Shuffle, options.Seed);
        int iterations = options.Iterations ?? options.Epochs * batcher.BatchesPerEpoch;
        var settings = new StepSettings(options.Lr, options.Clip, options.ClipMode, options.CarryState);
        var sampleRandom = new Random(options.Seed);
        double smoothed = -Math.Log(1.0 / vocab.Size) * 7; // the recipe: 7 names' worth of uniform guessing
        var losses = new List<float>(iterations);
        long chars = 0, charsAtLog = 0;
        var timer = new Stopwatch();
        double secondsAtLog = 0;

        double lastMean = double.NaN, lastRate = 0;
        int done = 0;
        for (int it = 0; it < iterations; it++, done++)
        {
            if (cancel.IsCancellationRequested)
                break;
            timer.Start();
            var batch = batcher.Next();
            backend.Step(batch, settings);
            chars += batch.Chars;
            bool last = it == iterations - 1;
            bool logNow = it % options.LogEvery == 0 || last;
            bool sampleNow = options.SampleEvery > 0 && it % options.SampleEvery == 0;
            bool checkpointNow = options.CheckpointEvery > 0 && (it + 1) % options.CheckpointEvery == 0 && !last;
            progress?.Invoke(new TrainProgress(it + 1, iterations, lastMean, lastRate));
            if (!(logNow || sampleNow || checkpointNow))
            {
                timer.Stop();
                continue;
            }
            // Reading the losses waits for the device, so the timer stops at a true boundary.
            int firstNew = losses.Count;
            foreach (var loss in backend.TakeLosses())
            {
                if (!float.IsFinite(loss))
                    throw Diverged(losses.Count, loss);
                losses.Add(loss);
                smoothed = Smoothing * smoothed + (1 - Smoothing) * loss;
            }
            timer.Stop();
            if (logNow)
            {
                double seconds = timer.Elapsed.TotalSeconds;
                double rate = (chars - charsAtLog) / Math.Max(seconds - secondsAtLog, 1e-9);
                double mean = losses.Skip(firstNew).Average(x => (double)x);
                _log.Iteration(it, losses[^1], mean, smoothed, rate, backend.Device, options.Verbose ? backend.LaunchesPerStep : null);
                (lastMean, lastRate) = (mean, rate);
                charsAtLog = chars;
                secondsAtLog = seconds;
            }
            if (sampleNow)
            {
                backend.Download(parameters);
                Sample(parameters, vocab, sampleRandom);
            }
            if (checkpointNow)
            {
                backend.Download(parameters);
                try
                {
                    Save(parameters, vocab, it + 1, smoothed);
                    _lastCheckpoint = it + 1;
                }
                catch (UserError e) when (e.ExitCode == UserError.WriteError)
                {
                    // The previous checkpoint is intact and the weights are in memory: go on.
                    _log.Info($"warning: {e.Message}; training goes on and will try again");
                }
            }
        }

        bool interrupted = done < iterations;
        foreach (var loss in backend.TakeLosses())
        {
            if (!float.IsFinite(loss))
                throw Diverged(losses.Count, loss);
            losses.Add(loss);
            smoothed = Smoothing * smoothed + (1 - Smoothing) * loss;
        }
        backend.Download(parameters);
        if (!parameters.Data.All(float.IsFinite))
            throw Diverged(losses.Count - 1, float.NaN);
        if (interrupted)
            _log.Info($"interrupted after {done} of {iterations} iterations");
        double trainBpc = BitsPerChar(backend, train);
        double? valBpc = val.Count > 0 ? BitsPerChar(backend, val) : null;
        if (options.Checkpoint is not null)
            Save(parameters, vocab, done, smoothed);
        var result = new TrainResult(backend.Device, done, chars, timer.Elapsed.TotalSeconds, smoothed,
            trainBpc, valBpc, losses.ToArray(), parameters, vocab, interrupted);
        _log.Summary(result);
        if (options.SampleEvery == 0 && options.SampleCount > 0)
            Sample(parameters, vocab, sampleRandom);
        return result;
    }

    private UserError Diverged(int iteration, float loss) => new(
        $"training diverged at iteration {iteration} (loss {loss}); " +
        (options.Checkpoint is null ? "no checkpoint was asked for" :
            _lastCheckpoint > 0 ? $"the checkpoint from iteration {_lastCheckpoint} in '{options.Checkpoint}' is kept" :
            $"'{options.Checkpoint}' was left as it was") +
        "; try a lower --lr or a --clip", UserError.Diverged);

    /// <summary>Mean loss per predicted character, in bits, from a fresh state per name.</summary>
    public static double BitsPerChar(IBackend backend, IReadOnlyList<int[]> names, int batchSize = 256)
    {
        double nats = 0;
        long chars = 0;
        foreach (var batch in Batcher.Cover(names, batchSize))
        {
            nats += backend.EvaluateSum(batch);
            chars += batch.Chars;
        }
        return nats / chars / Math.Log(2);
    }

    private void Sample(Parameters parameters, Vocabulary vocab, Random random)
    {
        var sampler = new Sampler(parameters, vocab);
        var names = new List<string>();
        for (int n = 0; n < options.SampleCount; n++)
            names.Add(Sampler.Display(options.CourseSampling ? sampler.SampleLikeCourse(n) : sampler.Sample(random)));
        _log.Samples(names);
    }

    private void Save(Parameters parameters, Vocabulary vocab, int iteration, double smoothed)
    {
        // Never replace a good checkpoint with weights that have blown up.
        if (!parameters.Data.All(float.IsFinite))
            throw Diverged(iteration - 1, float.NaN);
        Checkpoint.Save(options.Checkpoint!, parameters, vocab, new Dictionary<string, string>
        {
            ["iteration"] = iteration.ToString(CultureInfo.InvariantCulture),
            ["smoothed_loss"] = smoothed.ToString("R", CultureInfo.InvariantCulture),
            ["options"] = options.ToJson(),
            ["data"] = Path.GetFullPath(options.Data ?? BundledData),
        }.Concat(_namesMetadata).ToDictionary());
        _log.Info($"checkpoint written to '{options.Checkpoint}' (iteration {iteration})");
    }
}
