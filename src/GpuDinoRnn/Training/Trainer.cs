// The training loop, the only place that knows data, backend, checkpoints and sampling together.
// Reads top-down: build, loop { step; every N log; every M sample; every E evaluate; every K
// checkpoint }, summary.
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

/// <param name="Interrupted">Stopped by the cancellation token (Ctrl-C); Iterations says how far it got.</param>
/// <param name="StoppedEarly">Stopped by --patience.</param>
/// <param name="CheckpointIteration">The iteration of the model --checkpoint holds (with --keep-best, the best's).</param>
public sealed record TrainResult(
    string Device, int Iterations, long Chars, double TrainSeconds, double SmoothedLoss,
    double TrainBitsPerChar, double? ValBitsPerChar, float[] Losses, Parameters Parameters, Vocabulary Vocabulary,
    bool Interrupted = false, bool StoppedEarly = false, int? CheckpointIteration = null);

public sealed class Trainer(TrainOptions options, TextWriter stdout, TextWriter stderr)
{
    /// <summary>The recipe's smoothing of the reported loss.</summary>
    public const double Smoothing = 0.999;

    /// <summary>Names stored in checkpoints (for sample --novel) when they take less than this.</summary>
    public const int MaxStoredNamesChars = 1 << 20;

    private readonly TrainLog _log = new(options.LogFormat, stdout, stderr);

    // The state of the run, read and written by the steps of Run below.
    private readonly List<float> _losses = [];       // this run's losses: _losses[i] is iteration _start + i
    private int _start;                              // the first iteration of this run (after --resume, not 0)
    private double _smoothed;
    private int _lastCheckpoint = -1;                 // iteration of the checkpoint the file holds
    private BestSoFar _bestSoFar = BestSoFar.None;
    private Snapshot? _best;                          // --keep-best: the checkpoint of the best evaluation
    private KeyValuePair<string, string>[] _namesMetadata = [];
    private TrainingData? _data;
    private long _samplesDrawn;      // names sampled so far: the index into the seeded sample stream
    private RunState? _resumeFrom;
    private BackendState? _resumeState;  // the moments and carried state --resume loads into the backend
    private IBackend? _backend;
    private int _iteration;                          // the iteration being run (after the loop, the last), for a device failure's message

    /// <summary>For tests: wraps the backend a run trains on (a device that fails on cue).</summary>
    internal Func<IBackend, IBackend> WrapBackend { get; init; } = backend => backend;

    /// <summary>Everything a checkpoint holds, taken at one iteration.</summary>
    private sealed record Snapshot(Parameters Parameters, BackendState Backend, RunState Run);

    /// <summary>Where the bundled names live: next to the program.</summary>
    public static string BundledData => Path.Combine(AppContext.BaseDirectory, "data", "dinos.txt");

    /// <param name="cancel">Stops training after the current step; the run then ends as usual (checkpoint, summary).</param>
    /// <param name="progress">Told after every step (for a progress bar); null for none.</param>
    public TrainResult Run(CancellationToken cancel = default, Action<TrainProgress>? progress = null)
    {
        options.Validate();
        using var target = options.Checkpoint is null ? null
            : CheckpointTarget.Claim(options.Checkpoint, options.Overwrite, options.Resume == options.Checkpoint ? "--resume" : "--checkpoint",
                options.Data ?? BundledData);
        var (vocab, data, parameters) = Prepare();
        int iterations = options.Iterations ?? options.Epochs * data.StepsPerEpoch;
        if ((options.KeepBest || options.Patience > 0) && data.ValCount == 0)
            throw new UserError($"--keep-best and --patience need validation {data.Unit}: '{options.Data ?? BundledData}' leaves none at --val-fraction {options.ValFraction}");
        // A finished run's file may hold an earlier iteration (--keep-best's best): where it ended counts.
        if (_resumeFrom is { StoppedEarly: true, EndedAt: var stoppedAt })
            throw new UserError($"--resume: the run in '{options.Resume}' stopped early at iteration {stoppedAt} (--patience): resumed, it would stop there again");
        if (_resumeFrom is { } resume && iterations <= (resume.EndedAt ?? resume.Iteration))
            throw new UserError($"--resume: the run in '{options.Resume}' {(resume.EndedAt is null ? "is at" : "ended at")} iteration {resume.EndedAt ?? resume.Iteration}, " +
                $"not before the {iterations} asked for; give more --iterations or --epochs to train further");

        // A resumed run's file holds its start until this run writes it: as a failure must say.
        _iteration = _resumeFrom?.Iteration ?? 0;
        _lastCheckpoint = _resumeFrom?.Iteration ?? _lastCheckpoint;
        var coldStart = Stopwatch.StartNew();
        using var backend = WrapBackend(Devices.Create(options.Device, parameters.Shape, options.Threads, _log.Info, options.DropoutConfig,
            options.PreciseMath));
        try
        {
            return Train(backend, vocab, data, parameters, iterations, coldStart, cancel, progress);
        }
        catch (Exception e) when (Devices.Failed(e))
        {
            // Steps are queued ahead of the host: a fault shows at the next call that waits for the device.
            throw new UserError($"{backend.Device} failed by iteration {_iteration}: {Devices.Reason(e)}; " + Kept() + "; try --device cpu",
                UserError.DeviceError, e);
        }
    }

    /// <summary>The run on its backend: the loop, then the summary, the last checkpoint and the names.</summary>
    private TrainResult Train(IBackend backend, Vocabulary vocab, TrainingData data, Parameters parameters, int iterations,
        Stopwatch coldStart, CancellationToken cancel, Action<TrainProgress>? progress)
    {
        backend.Upload(parameters);
        _backend = backend;
        _log.Info($"device {backend.Device}; {data.TrainCount} training {data.Unit}, {data.ValCount} validation; V = {vocab.Size}, {Describe(parameters.Shape)}, " +
                  $"B = {options.Batch}; ready in {coldStart.Elapsed.TotalSeconds:F2} s");

        _data = data;
        bool carry = options.CarryState || data.Continuous;
        var schedule = options.Schedule(iterations);
        var optimizer = options.OptimizerConfig;
        _smoothed = -Math.Log(1.0 / vocab.Size) * 7; // the recipe: 7 names' worth of uniform guessing
        int start = 0;
        if (_resumeFrom is { } state)
        {
            data.State = state.Batcher;
            backend.LoadState(_resumeState!);
            (start, _smoothed, _samplesDrawn, _bestSoFar) = (state.Iteration, state.SmoothedLoss, state.SamplesDrawn, state.Best);
            _start = start; // _lastCheckpoint is there already (Run)
            // A --keep-best file holds the best evaluation's model: it stays the best until a better one.
            if (options.KeepBest && state.Best.Iteration == start)
                _best = new Snapshot(parameters.Clone(), backend.SaveState(), state);
            _log.Info($"resuming at iteration {start} of {iterations}");
        }
        if (start < iterations)
        {
            Rehearse(backend, data, parameters, new StepSettings(schedule.At(start), options.Clip, options.ClipMode, carry, optimizer));
            ReadLosses(backend); // nothing to read yet: compiles the loop's last call too
        }
        long chars = 0, charsAtLog = 0;
        int lossesAtLog = 0;
        var timer = new Stopwatch();
        double secondsAtLog = 0, lastMean = double.NaN, lastRate = 0;
        bool stoppedEarly = false;
        bool samplingStopped = false; // Ctrl-C cut a drawing of names short: the run counts as interrupted
        int done = start;
        for (int it = start; it < iterations && !stoppedEarly; it++, done++)
        {
            if (cancel.IsCancellationRequested)
                break;
            _iteration = it;
            timer.Start();
            var batch = data.Next(out bool resetState);
            if (resetState)
                backend.ResetState();
            float lr = schedule.At(it);
            backend.Step(batch, new StepSettings(lr, options.Clip, options.ClipMode, carry, optimizer));
            chars += batch.Chars;
            bool last = it == iterations - 1;
            bool logNow = it % options.LogEvery == 0 || last;
            bool sampleNow = options.SampleEvery > 0 && it % options.SampleEvery == 0;
            bool checkpointNow = options.CheckpointEvery > 0 && (it + 1) % options.CheckpointEvery == 0 && !last;
            bool evalNow = options.EvalEvery > 0 && data.ValCount > 0 && (it + 1) % options.EvalEvery == 0 && !last;
            if (!(logNow || sampleNow || checkpointNow || evalNow))
            {
                timer.Stop();
                progress?.Invoke(new TrainProgress(it + 1, iterations, lastMean, lastRate));
                continue;
            }
            // Reading the losses waits for the device, so the timer stops at a true boundary.
            ReadLosses(backend);
            timer.Stop();
            if (logNow)
            {
                double seconds = timer.Elapsed.TotalSeconds;
                lastRate = (chars - charsAtLog) / Math.Max(seconds - secondsAtLog, 1e-9);
                lastMean = _losses.Skip(lossesAtLog).Where(float.IsFinite).Select(x => (double)x).DefaultIfEmpty(double.NaN).Average();
                _log.Iteration(it, _losses[^1], lastMean, _smoothed, backend.LastGradientNorm(), lr, lastRate, backend.Device,
                    options.Verbose ? backend.LaunchesPerStep : null);
                (charsAtLog, secondsAtLog, lossesAtLog) = (chars, seconds, _losses.Count);
            }
            // Samples before the evaluation: a checkpoint it writes then counts them, as a resumed run must.
            if (sampleNow)
            {
                backend.Download(parameters);
                samplingStopped |= !Sample(parameters, vocab, cancel); // when stopped, the loop ends before the next step
            }
            if (evalNow)
                stoppedEarly = Evaluate(backend, parameters, vocab, data, it + 1);
            if (checkpointNow)
                SavePeriodic(backend, parameters, vocab, it + 1);
            progress?.Invoke(new TrainProgress(it + 1, iterations, lastMean, lastRate));
        }

        bool interrupted = done < iterations && !stoppedEarly;
        ReadLosses(backend);
        backend.Download(parameters);
        if (!parameters.Data.All(float.IsFinite))
            throw Diverged(_losses.Count - 1, float.NaN, NonFiniteGradients());
        if (interrupted)
            _log.Info($"interrupted after {done} of {iterations} iterations");
        double? valBpc = data.ValCount > 0 ? BitsPerChar(backend, data.ValBatches()) : null;
        // An interrupted run keeps the best evaluation's: an evaluation here, where the whole run would make
        // none, would make the resumed run differ from it.
        bool keepBest = options.KeepBest && _best is not null && (interrupted || valBpc >= _bestSoFar.Bpc);
        if (keepBest)
        {
            // The run ends with the best model: its weights for the summary, the samples and the result.
            _best!.Parameters.Data.CopyTo(parameters.Data, 0);
            backend.Upload(parameters);
            valBpc = _bestSoFar.Bpc;
            _log.Info($"keeping the best model: iteration {_bestSoFar.Iteration}, validation {_bestSoFar.Bpc:F4} bits/char" +
                (options.Checkpoint is null ? "" : $" (in '{options.Checkpoint}')"));
        }
        else if (options.KeepBest && !interrupted && valBpc is { } final)
        {
            _bestSoFar = new BestSoFar(final, done, 0); // the last model is the best: the file holds it
        }
        double trainBpc = BitsPerChar(backend, data.TrainBatches());
        int? endedAt = interrupted ? null : done;
        if (options.Checkpoint is not null && !keepBest)
            Write(Capture(parameters, done, endedAt, stoppedEarly), vocab);
        else if (options.Checkpoint is not null && (endedAt is not null || _lastCheckpoint != _bestSoFar.Iteration))
            Write(_best! with { Run = _best.Run with { EndedAt = endedAt, StoppedEarly = stoppedEarly } }, vocab); // says the run ended; or its write failed
        var result = new TrainResult(backend.Device, done, chars, timer.Elapsed.TotalSeconds, _smoothed,
            trainBpc, valBpc, _losses.ToArray(), parameters, vocab, interrupted, stoppedEarly,
            options.Checkpoint is null ? null : _lastCheckpoint);
        _log.Summary(result);
        // An interrupted run draws no last names (asked to stop, it stops); stopped while drawing names, at
        // the end or at the last iteration, a run is interrupted too (exit 130), though its training was done.
        if (options.SampleEvery == 0 && options.SampleCount > 0 && !interrupted)
            samplingStopped |= !Sample(parameters, vocab, cancel);
        return samplingStopped ? result with { Interrupted = true } : result;
    }

    /// <summary>Data, vocabulary (the data's, or the --init checkpoint's, which must agree), split and weights.</summary>
    private (Vocabulary, TrainingData, Parameters) Prepare()
    {
        string path = options.Data ?? BundledData;
        bool continuous = options.TextMode == TextMode.Continuous;
        // Continuous text keeps the text as it is; names are stripped and (by default) lower-cased.
        var dataset = continuous ? null : Dataset.Load(path, options.KeepCase, options.MaxNameLength);
        string? text = continuous ? Dataset.LoadText(path) : null;
        string? from = options.Resume ?? options.Init;
        LoadedModel? init = from is null ? null : Checkpoint.Load(from);
        if (options.Resume is not null)
        {
            _resumeFrom = RunState.FromMetadata(init!.Metadata, options.Resume);
            // Checked before a device is set up, so a damaged file is one line and nothing else.
            _resumeState = _resumeFrom.BackendState(init.Parameters.Shape, init.Extra, options.Resume, options.OptimizerConfig.HasState,
                options.CarryState || continuous);
        }
        var dataVocab = Vocabulary.FromNames(dataset?.Names ?? [text!]);
        var vocab = init?.Vocabulary ?? dataVocab;
        // The file's distinct symbols: V less the end-of-name mark, which no file holds.
        if (vocab.Size - 1 > options.MaxVocab)
            throw new UserError($"data: '{path}' holds {vocab.Size - 1} distinct symbols, more than --max-vocab {options.MaxVocab}: is it a list of names?");
        if (!dataVocab.SameAs(vocab))
            throw new UserError($"'{from}' has vocabulary {vocab.Display()} but the data '{path}' has {dataVocab.Display()}");
        // A model given by --init or --resume keeps its own shape.
        var shape = init?.Parameters.Shape ?? options.Shape(vocab.Size);
        shape.CheckSize();
        options = options with { Hidden = shape.H, Cell = shape.Cell, Layers = shape.Layers }; // as checkpoints store them
        var parameters = init?.Parameters ?? Parameters.Initialize(shape, options.InitScheme, options.Seed);
        if (continuous)
        {
            var ids = vocab.EncodeText(text!);
            int valLength = options.ValFraction > 0 ? (int)Math.Round(options.ValFraction * ids.Length) : 0;
            if (valLength > 0 && valLength <= options.SeqLength)
                throw new UserError($"--val-fraction {options.ValFraction} leaves {valLength} symbols for validation, not more than one --seq-length {options.SeqLength} chunk");
            // The validation text is the end of the file: a seeded choice of chunks would leak context.
            return (vocab, TrainingData.ForText(ids[..^valLength], ids[^valLength..], options.Batch, options.SeqLength), parameters);
        }
        if (dataset!.Names.Sum(n => n.Length + 1) <= MaxStoredNamesChars)
            _namesMetadata = [new("names", string.Join('\n', dataset.Names))];
        var (trainNames, valNames) = dataset.Split(options.ValFraction, options.Seed);
        var data = TrainingData.ForNames(trainNames.Select(vocab.Encode).ToList(), valNames.Select(vocab.Encode).ToList(),
            options.Batch, options.Shuffle, options.Seed);
        return (vocab, data, parameters);
    }

    /// <summary>
    /// One untimed step on the next batch, then the backend and the data put back as they were:
    /// the step's code is compiled (the JIT compiles a method on its first call) and its buffers
    /// sized before the timer starts, as a GPU's kernels are. Without it the first iteration of a
    /// B 32 run took 8 ms where the others take 0.1 ms.
    /// </summary>
    /// <param name="parameters">The weights the backend holds now: they are uploaded again after the step.</param>
    internal static void Rehearse(IBackend backend, TrainingData data, Parameters parameters, StepSettings settings)
    {
        var position = data.State;
        var batch = data.Next(out _);
        data.State = position;
        var state = backend.SaveState();
        backend.Step(batch, settings);
        backend.TakeLosses();
        backend.Upload(parameters);
        backend.LoadState(state);
    }

    /// <summary>Takes the device's pending losses into the run.</summary>
    private void ReadLosses(IBackend backend)
    {
        var losses = backend.TakeLosses();
        for (int k = 0; k < losses.Length; k++)
        {
            float loss = losses[k];
            if (!float.IsFinite(loss))
            {
                // The device did not apply that step: a non-finite loss or gradient guards the update.
                // Its gradient is still on the device only if it was the latest step.
                string gradients = k == losses.Length - 1 ? NonFiniteGradients() : "";
                if (options.OnNan == NanPolicy.Stop)
                    throw Diverged(_losses.Count, loss, gradients);
                _log.Info($"warning: iteration {_start + _losses.Count}: loss {loss}{gradients}; the step was not applied, training goes on");
                _losses.Add(loss);
                continue;
            }
            _losses.Add(loss);
            _smoothed = Smoothing * _smoothed + (1 - Smoothing) * loss;
        }
    }

    /// <summary>
    /// Validation bits per character; with --keep-best the best model is kept (and the checkpoint follows it), and
    /// with --patience K, K evaluations without a new best stop training (returns true).
    /// </summary>
    private bool Evaluate(IBackend backend, Parameters parameters, Vocabulary vocab, TrainingData data, int iteration)
    {
        double bpc = BitsPerChar(backend, data.ValBatches());
        bool better = bpc < _bestSoFar.Bpc;
        _bestSoFar = better ? new BestSoFar(bpc, iteration, 0) : _bestSoFar with { EvalsWithoutGain = _bestSoFar.EvalsWithoutGain + 1 };
        if (better && options.KeepBest)
        {
            backend.Download(parameters);
            _best = Capture(parameters, iteration);
            if (options.Checkpoint is not null)
                TryWrite(_best, vocab);
        }
        _log.Evaluation(iteration, bpc, _bestSoFar.Bpc, _bestSoFar.Iteration);
        if (options.Patience > 0 && _bestSoFar.EvalsWithoutGain >= options.Patience)
        {
            _log.Info($"early stop: no better validation in {options.Patience} evaluations (best {_bestSoFar.Bpc:F4} bits/char at iteration {_bestSoFar.Iteration})");
            return true;
        }
        return false;
    }

    /// <summary>A checkpoint during training: a failed write is a warning, the previous file stays.</summary>
    private void SavePeriodic(IBackend backend, Parameters parameters, Vocabulary vocab, int iteration)
    {
        backend.Download(parameters);
        TryWrite(Capture(parameters, iteration), vocab);
    }

    private void TryWrite(Snapshot snapshot, Vocabulary vocab)
    {
        try
        {
            Write(snapshot, vocab);
        }
        catch (UserError e) when (e.ExitCode == UserError.WriteError)
        {
            _log.Info($"warning: {e.Message}; training goes on and will try again");
        }
    }

    /// <param name="index">Position in this run's losses.</param>
    /// <param name="gradients">NonFiniteGradients() when that step is the latest, else "".</param>
    private UserError Diverged(int index, float loss, string gradients) => new(
        $"training diverged at iteration {_start + index} (loss {loss}{gradients}); " + Kept() + "; try a lower --lr or a --clip",
        UserError.Diverged);

    /// <summary>What --checkpoint holds when a run stops on an error.</summary>
    private string Kept() =>
        options.Checkpoint is null ? "no checkpoint was asked for" :
        _lastCheckpoint > 0 ? $"the checkpoint from iteration {_lastCheckpoint} in '{options.Checkpoint}' is kept" :
        $"'{options.Checkpoint}' was left as it was";

    /// <summary>Which tensors' gradients are NaN or infinite at the latest step, for the divergence message.</summary>
    private string NonFiniteGradients()
    {
        if (_backend is null)
            return "";
        var g = new float[_backend.Shape.ParameterCount];
        _backend.DownloadGradients(g);
        var bad = Parameters.NamesOf(_backend.Shape).Where(name =>
        {
            var (offset, dims) = Parameters.Layout(_backend.Shape, name);
            return !g.AsSpan(offset, dims.Aggregate(1, (a, b) => a * b)).ToArray().All(float.IsFinite);
        }).Select(n => "d" + n).ToList();
        return bad.Count == 0 ? "" : $"; non-finite gradient in {string.Join(", ", bad)}";
    }

    /// <summary>The model for the log: "H = 192" for the course's cell, "lstm × 2, H = 128" otherwise.</summary>
    public static string Describe(ModelShape shape) =>
        shape.IsVanilla ? $"H = {shape.H}" : $"{shape.CellName} × {shape.Layers}, H = {shape.H}";

    /// <summary>Mean loss per predicted character, in bits, from a fresh state per name.</summary>
    public static double BitsPerChar(IBackend backend, IEnumerable<Batch> batches)
    {
        var (nats, chars) = TotalLoss(backend, batches);
        return nats / chars / Math.Log(2);
    }

    /// <summary>The summed loss (nats) over every predicted character of the batches, and their count.</summary>
    public static (double Nats, long Chars) TotalLoss(IBackend backend, IEnumerable<Batch> batches)
    {
        double nats = 0;
        long chars = 0;
        foreach (var batch in batches)
        {
            nats += backend.EvaluateSum(batch);
            chars += batch.Chars;
        }
        return (nats, chars);
    }

    /// <summary>Draws and prints --sample-count names, each as it is drawn; false when cancel stopped it first.</summary>
    private bool Sample(Parameters parameters, Vocabulary vocab, CancellationToken cancel)
    {
        var sampler = new Sampler(parameters, vocab);
        // The stream moves past every name asked for, drawn or not: a run stopped here and resumed
        // draws the names the whole run draws next.
        long first = _samplesDrawn;
        _samplesDrawn += options.SampleCount;
        int n = 0;
        // Ctrl-C must stop a long --sample-count too, not only the training steps.
        for (; n < options.SampleCount && !cancel.IsCancellationRequested; n++)
            _log.Sample(Sampler.Display(options.CourseSampling ? sampler.SampleLikeCourse(n) : sampler.Sample(new SampleOptions(), options.Seed, first + n).Name,
                options.LowerCased));
        _log.EndSamples();
        if (n < options.SampleCount)
            _log.Info($"sampling stopped after {n} of {options.SampleCount} names");
        return n == options.SampleCount;
    }

    /// <summary>The run as it is now, with the weights last downloaded into parameters (copied).</summary>
    private Snapshot Capture(Parameters parameters, int iteration, int? endedAt = null, bool stoppedEarly = false)
    {
        var state = _backend!.SaveState();
        return new Snapshot(parameters.Clone(), state,
            new RunState(iteration, _smoothed, _samplesDrawn, _data!.State, state.Updates, _bestSoFar, endedAt, stoppedEarly));
    }

    private void Write(Snapshot snapshot, Vocabulary vocab)
    {
        var (parameters, run) = (snapshot.Parameters, snapshot.Run);
        // Never replace a good checkpoint with weights that have blown up.
        if (!parameters.Data.All(float.IsFinite))
            throw Diverged(run.Iteration - 1 - _start, float.NaN, NonFiniteGradients());
        Checkpoint.Save(options.Checkpoint!, parameters, vocab, new Dictionary<string, string>
        {
            ["iteration"] = run.Iteration.ToString(CultureInfo.InvariantCulture),
            ["smoothed_loss"] = run.SmoothedLoss.ToString("R", CultureInfo.InvariantCulture),
            // The data's full path, so that --resume works from another folder.
            ["options"] = (options with { Data = options.Data is null ? null : Path.GetFullPath(options.Data) }).ToJson(),
            ["data"] = Path.GetFullPath(options.Data ?? BundledData),
            [RunState.Key] = run.ToJson(),
        }.Concat(_namesMetadata).ToDictionary(),
            RunState.StateTensors(parameters.Shape, snapshot.Backend, options.OptimizerConfig.HasState, options.CarryState || _data!.Continuous));
        _lastCheckpoint = run.Iteration;
        _log.Info($"checkpoint written to '{options.Checkpoint}' (iteration {run.Iteration})");
    }
}
