// One options class per verb. Training options are nullable so that a value given on the
// command line can be told apart from the preset's (given values win).
using System.Reflection;
using CommandLine;
using GpuDinoRnn.Backends;
using GpuDinoRnn.Training;

namespace GpuDinoRnn.Cli;

/// <summary>What every verb has: the arguments without an option's name, refused (the parser would drop them silently).</summary>
public abstract class VerbOptions
{
    [Value(0, Hidden = true)]
    public IEnumerable<string> Unnamed { get; set; } = [];

    /// <summary>Fails on the first argument that belongs to no option: `train names.txt` must not train on the bundled names.</summary>
    public void RefuseUnnamed()
    {
        if (Unnamed.FirstOrDefault() is { } stray)
            throw new UserError($"'{stray}' is not an option: each value follows its option's name (gpudinornn help {GetType().GetCustomAttribute<VerbAttribute>()!.Name} lists them)");
    }

    /// <summary>--threads as given, or every core.</summary>
    public static int ThreadsOrAll(int? threads) => threads switch
    {
        null => Environment.ProcessorCount,
        < 1 => throw new UserError($"--threads must be at least 1 (got {threads})"),
        _ => threads.Value,
    };
}

[Verb("train", HelpText = "Train a model on a file of names and print new ones.")]
public sealed class TrainVerb : VerbOptions
{
    [Option("preset", HelpText = "Start from a preset: default; course (the Dinosaurus Island recipe exactly); quality (2 GRU layers with dropout, kept at the best validation).")]
    public string? Preset { get; set; }

    [Option("data", HelpText = "Names file, one name per line (default: the bundled data/dinos.txt).")]
    public string? Data { get; set; }

    [Option("text-mode", HelpText = "names (one per line, default) or continuous (one long text in --batch streams, the state carried between chunks).")]
    public GpuDinoRnn.Data.TextMode? TextMode { get; set; }

    [Option("seq-length", HelpText = "Continuous text: symbols per stream and step (default 64).")]
    public int? SeqLength { get; set; }

    [Option("keep-case", HelpText = "Keep letter case (default: lower-case every name).")]
    public bool KeepCase { get; set; }

    [Option("max-name-length", HelpText = "Longest name accepted (default 1000).")]
    public int? MaxNameLength { get; set; }

    [Option("cell", HelpText = "Recurrent cell: rnn (default; the course's), gru or lstm.")]
    public GpuDinoRnn.Kernels.CellKind? Cell { get; set; }

    [Option("layers", HelpText = "Stacked recurrent layers (default 1).")]
    public int? Layers { get; set; }

    [Option("dropout", HelpText = "Dropout rate on each layer's output while training (default 0: off; seeded by --seed).")]
    public float? Dropout { get; set; }

    [Option("hidden", HelpText = "Hidden units H per layer (default 192; course 50).")]
    public int? Hidden { get; set; }

    [Option("batch", HelpText = "Names per mini-batch B (default 16; course 1).")]
    public int? Batch { get; set; }

    [Option("lr", HelpText = "Learning rate (default 0.0015; course 0.01).")]
    public float? Lr { get; set; }

    [Option("clip", HelpText = "Gradient clip threshold, 0 = off (default 5).")]
    public float? Clip { get; set; }

    [Option("clip-mode", HelpText = "value (element-wise, the course's) or norm (global L2 norm, default).")]
    public ClipMode? ClipMode { get; set; }

    [Option("optimizer", HelpText = "sgd (the course's), momentum, adam (default), adamw, adagrad or rmsprop.")]
    public string? Optimizer { get; set; }

    [Option("momentum", HelpText = "Momentum μ (default 0.9).")]
    public float? Momentum { get; set; }

    [Option("beta1", HelpText = "Adam β1 (default 0.9).")]
    public float? Beta1 { get; set; }

    [Option("beta2", HelpText = "Adam β2 (default 0.999).")]
    public float? Beta2 { get; set; }

    [Option("alpha", HelpText = "RMSprop α (default 0.99).")]
    public float? Alpha { get; set; }

    [Option("eps", HelpText = "ε of adam, adamw, adagrad, rmsprop (default 1e-8).")]
    public float? Eps { get; set; }

    [Option("weight-decay", HelpText = "AdamW's decoupled weight decay (default 0.01).")]
    public float? WeightDecay { get; set; }

    [Option("on-nan", HelpText = "After a step with a NaN or infinite loss or gradient (never applied): stop (default, exit 5) or skip.")]
    public NanPolicy? OnNan { get; set; }

    [Option("lr-schedule", HelpText = "constant (default), step or cosine.")]
    public LrScheduleKind? LrSchedule { get; set; }

    [Option("warmup", HelpText = "Iterations of linear learning-rate warm-up (default 0).")]
    public int? Warmup { get; set; }

    [Option("lr-step-every", HelpText = "step schedule: iterations between decays (default 1000).")]
    public int? LrStepEvery { get; set; }

    [Option("lr-gamma", HelpText = "step schedule: factor per decay (default 0.5).")]
    public float? LrGamma { get; set; }

    [Option("min-lr", HelpText = "cosine schedule: the final learning rate (default 0).")]
    public float? MinLr { get; set; }

    [Option("val-fraction", HelpText = "Fraction of names held out for validation (default 0.1; 0 = none).")]
    public double? ValFraction { get; set; }

    [Option("threads", HelpText = "Threads for the cpu backend (default, and at most: all cores).")]
    public int? Threads { get; set; }

    [Option("seed", HelpText = "Seed for the split, order, initialisation and samples (default 1).")]
    public int? Seed { get; set; }

    [Option("iterations", HelpText = "Mini-batches to train on (instead of --epochs).")]
    public int? Iterations { get; set; }

    [Option("epochs", HelpText = "Passes over the training names (default 10).")]
    public int? Epochs { get; set; }

    [Option("no-shuffle", HelpText = "Visit names in the data file's order.")]
    public bool NoShuffle { get; set; }

    [Option("carry-state", HelpText = "Carry each name's final hidden state into the next (batch 1; course).")]
    public bool CarryState { get; set; }

    [Option("resume", HelpText = "Continue the run saved in this checkpoint exactly where it stopped (its options are used; --device, --threads, --iterations, --epochs may be given).")]
    public string? Resume { get; set; }

    [Option("init", HelpText = "Start from this checkpoint's weights.")]
    public string? Init { get; set; }

    [Option("checkpoint", HelpText = "Write the model here (safetensors) at the end.")]
    public string? Checkpoint { get; set; }

    [Option("overwrite", HelpText = "Replace an existing --checkpoint file.")]
    public bool Overwrite { get; set; }

    [Option("max-vocab", HelpText = "Most distinct symbols a names file may hold (default 1000).")]
    public int? MaxVocab { get; set; }

    [Option("checkpoint-every", HelpText = "Also write the checkpoint every N iterations.")]
    public int? CheckpointEvery { get; set; }

    [Option("device", HelpText = "auto, cpu, ilgpu-cpu, cuda, opencl, cuda:N, opencl:N, or an index from `devices` (default auto).")]
    public string? Device { get; set; }

    [Option("log-every", HelpText = "Log every N iterations (default 100; course 2000).")]
    public int? LogEvery { get; set; }

    [Option("log-format", HelpText = "text or jsonl (JSON lines on stdout; samples and notes on stderr).")]
    public LogFormat? LogFormat { get; set; }

    [Option("eval-every", HelpText = "Validation bits per character every N iterations (default: at the end only).")]
    public int? EvalEvery { get; set; }

    [Option("keep-best", HelpText = "The checkpoint keeps the model with the lowest validation loss (needs --eval-every).")]
    public bool KeepBest { get; set; }

    [Option("patience", HelpText = "Stop after K evaluations without a better validation loss.")]
    public int? Patience { get; set; }

    [Option("sample-every", HelpText = "Sample names every N iterations (default 0: at the end).")]
    public int? SampleEvery { get; set; }

    [Option("sample-count", HelpText = "Names sampled each time (default 10; course 7).")]
    public int? SampleCount { get; set; }

    [Option("verbose", HelpText = "Also log kernel launches per step.")]
    public bool Verbose { get; set; }

    /// <summary>A resumed run takes its options from the checkpoint; only where and how long may change.</summary>
    private TrainOptions ForResume(string path)
    {
        var o = TrainOptions.ForResume(path, GpuDinoRnn.Checkpoints.Checkpoint.Load(path).Metadata);
        return o with
        {
            Device = Device ?? o.Device,
            Threads = Threads ?? o.Threads,
            Iterations = Iterations ?? (Epochs is null ? o.Iterations : null),
            Epochs = Epochs ?? o.Epochs,
        };
    }

    /// <summary>
    /// The options given on the command line (a value, or a switch turned on) other than those a
    /// resumed run may change: refused, rather than silently replaced by the checkpoint's.
    /// </summary>
    private List<string> GivenBesideResume() =>
        typeof(TrainVerb).GetProperties()
            .Select(p => (Property: p, Option: p.GetCustomAttribute<OptionAttribute>()))
            .Where(x => x.Option?.LongName is { } name && name is not ("resume" or "device" or "threads" or "iterations" or "epochs"))
            .Where(x => x.Property.GetValue(this) is { } value && value is not false)
            .Select(x => "--" + x.Option!.LongName)
            .ToList();

    /// <summary>--init trains the checkpoint's model: a cell, layer count or hidden size that differs from it would be ignored.</summary>
    private void RefuseAnotherShape(string init)
    {
        var shape = GpuDinoRnn.Checkpoints.Checkpoint.Load(init).Parameters.Shape;
        var differ = new List<string>();
        if (Cell is { } cell && cell != shape.Cell)
            differ.Add($"--cell {GpuDinoRnn.Model.CellNames.Of(cell)}");
        if (Layers is { } layers && layers != shape.Layers)
            differ.Add($"--layers {layers}");
        if (Hidden is { } hidden && hidden != shape.H)
            differ.Add($"--hidden {hidden}");
        if (differ.Count > 0)
            throw new UserError($"--init '{init}' holds a {shape.CellName} model of {shape.Layers} layer(s), H {shape.H}: {string.Join(", ", differ)} cannot change it");
    }

    /// <summary>The preset's options with every option given here applied on top.</summary>
    public TrainOptions ToOptions()
    {
        if (Iterations is not null && Epochs is not null)
            throw new UserError("--iterations and --epochs contradict each other: give one");
        if (Resume is not null)
        {
            if (GivenBesideResume() is { Count: > 0 } given)
                throw new UserError($"--resume continues with the options the run was saved with: {string.Join(", ", given)} cannot be given with it " +
                    "(only --device, --threads, --iterations or --epochs)");
            return ForResume(Resume);
        }
        if (Init is not null && (Cell is not null || Hidden is not null || Layers is not null))
            RefuseAnotherShape(Init);
        var o = TrainOptions.ForPreset(Preset);
        return o with
        {
            Data = Data ?? o.Data,
            KeepCase = KeepCase || o.KeepCase,
            TextMode = TextMode ?? o.TextMode,
            SeqLength = SeqLength ?? o.SeqLength,
            MaxNameLength = MaxNameLength ?? o.MaxNameLength,
            Cell = Cell ?? o.Cell,
            Layers = Layers ?? o.Layers,
            Dropout = Dropout ?? o.Dropout,
            Hidden = Hidden ?? o.Hidden,
            Batch = Batch ?? o.Batch,
            Lr = Lr ?? o.Lr,
            Clip = Clip ?? o.Clip,
            ClipMode = ClipMode ?? o.ClipMode,
            Optimizer = Optimizer?.ToLowerInvariant() ?? o.Optimizer,
            Momentum = Momentum ?? o.Momentum,
            Beta1 = Beta1 ?? o.Beta1,
            Beta2 = Beta2 ?? o.Beta2,
            Alpha = Alpha ?? o.Alpha,
            Eps = Eps ?? o.Eps,
            WeightDecay = WeightDecay ?? o.WeightDecay,
            LrSchedule = LrSchedule ?? o.LrSchedule,
            OnNan = OnNan ?? o.OnNan,
            Warmup = Warmup ?? o.Warmup,
            LrStepEvery = LrStepEvery ?? o.LrStepEvery,
            LrGamma = LrGamma ?? o.LrGamma,
            MinLr = MinLr ?? o.MinLr,
            ValFraction = ValFraction ?? o.ValFraction,
            Threads = Threads ?? o.Threads,
            Seed = Seed ?? o.Seed,
            Iterations = Iterations ?? (Epochs is null ? o.Iterations : null),
            Epochs = Epochs ?? o.Epochs,
            Shuffle = NoShuffle ? GpuDinoRnn.Data.ShuffleMode.None : o.Shuffle,
            CarryState = CarryState || o.CarryState,
            Init = Init ?? o.Init,
            Checkpoint = Checkpoint ?? o.Checkpoint,
            Overwrite = Overwrite || o.Overwrite,
            MaxVocab = MaxVocab ?? o.MaxVocab,
            CheckpointEvery = CheckpointEvery ?? o.CheckpointEvery,
            Device = Device ?? o.Device,
            LogEvery = LogEvery ?? o.LogEvery,
            LogFormat = LogFormat ?? o.LogFormat,
            SampleEvery = SampleEvery ?? o.SampleEvery,
            EvalEvery = EvalEvery ?? o.EvalEvery,
            KeepBest = KeepBest || o.KeepBest,
            Patience = Patience ?? o.Patience,
            SampleCount = SampleCount ?? o.SampleCount,
            Verbose = Verbose || o.Verbose,
        };
    }
}

[Verb("sample", HelpText = "Print new names from a trained model.")]
public sealed class SampleVerb : VerbOptions
{
    [Option("model", Required = true, HelpText = "A checkpoint written by train --checkpoint.")]
    public string Model { get; set; } = "";

    [Option("count", Default = 10, HelpText = "How many names.")]
    public int Count { get; set; }

    [Option("seed", Default = 1, HelpText = "Seed of the sampling generator.")]
    public int Seed { get; set; }

    [Option("temperature", Default = 1.0, HelpText = "Softmax temperature: below 1 is safer, above 1 wilder.")]
    public double Temperature { get; set; }

    [Option("max-length", Default = 50, HelpText = "Longest name drawn, in symbols.")]
    public int MaxLength { get; set; }

    [Option("min-length", Default = 1, HelpText = "Shortest name drawn, in symbols (0 allows an empty name).")]
    public int MinLength { get; set; }

    [Option("top-k", HelpText = "Draw only from the K most likely symbols (default: all).")]
    public int? TopK { get; set; }

    [Option("top-p", Default = 1.0, HelpText = "Draw only from the most likely symbols that together reach P (1: all).")]
    public double TopP { get; set; }

    [Option("prefix", Default = "", HelpText = "Every name starts with these letters.")]
    public string Prefix { get; set; } = "";

    [Option("novel", HelpText = "Keep only names that are not in the training data.")]
    public bool Novel { get; set; }

    [Option("data", HelpText = "The training names, for --novel and the novelty report (default: those stored in the checkpoint).")]
    public string? Data { get; set; }

    [Option("format", Default = "text", HelpText = "text (one name a line) or jsonl (name, log_probability, novel).")]
    public string Format { get; set; } = "text";

    [Option("device", Default = "cpu", HelpText = "Where to draw: cpu (every core), or a GPU (auto, cuda, opencl, …): a thread per name, for large --count.")]
    public string Device { get; set; } = "cpu";

    [Option("batch", Default = 65536, HelpText = "Names per device launch (the names do not depend on it).")]
    public int Batch { get; set; }

    [Option("threads", HelpText = "Threads for ilgpu-cpu (default: all cores).")]
    public int? Threads { get; set; }
}

[Verb("bench", HelpText = "Time the same training job on each device, side by side.")]
public sealed class BenchVerb : VerbOptions
{
    [Option("devices", Default = "all", HelpText = "all (every usable device, ilgpu-cpu included) or a comma list such as cpu,cuda:0.")]
    public string Devices { get; set; } = "all";

    [Option("cell", Default = GpuDinoRnn.Kernels.CellKind.Rnn, HelpText = "Recurrent cell of the job: rnn, gru or lstm.")]
    public GpuDinoRnn.Kernels.CellKind Cell { get; set; }

    [Option("layers", Default = 1, HelpText = "Stacked layers of the job.")]
    public int Layers { get; set; }

    [Option("hidden", Default = 128, HelpText = "Hidden units H.")]
    public int Hidden { get; set; }

    [Option("batch", Default = 32, HelpText = "Names per step B.")]
    public int Batch { get; set; }

    [Option("steps", Default = 50, HelpText = "Timed training steps per repetition.")]
    public int Steps { get; set; }

    [Option("warm-up", Default = 5, HelpText = "Untimed steps first.")]
    public int WarmUp { get; set; }

    [Option("repetitions", Default = 5, HelpText = "Timed repetitions (the table shows the median and the range).")]
    public int Repetitions { get; set; }

    [Option("seed", Default = 1, HelpText = "Seed of the batches and the initial weights.")]
    public int Seed { get; set; }

    [Option("threads", Separator = ',', HelpText = "Threads for cpu (default, and at most: all cores) and ilgpu-cpu (default: all cores); a list such as 1,2 times them at each count.")]
    public IEnumerable<int> Threads { get; set; } = [];

    [Option("data", HelpText = "Names file (default: the bundled names).")]
    public string? Data { get; set; }

    [Option("json", HelpText = "Also write the numbers as JSON.")]
    public string? Json { get; set; }

    [Option("csv", HelpText = "Also write the numbers as CSV (with --plot, FILE.csv beside the plot by default).")]
    public string? Csv { get; set; }

    [Option("plot", HelpText = "Draw chars/s per device as a PNG.")]
    public string? Plot { get; set; }
}

[Verb("eval", HelpText = "Loss and bits per character of a model on a file of names.")]
public sealed class EvalVerb : VerbOptions
{
    [Option("model", Required = true, HelpText = "A checkpoint written by train --checkpoint.")]
    public string Model { get; set; } = "";

    [Option("data", Required = true, HelpText = "Names file, one name per line (read as the model was trained: same case handling).")]
    public string Data { get; set; } = "";

    [Option("device", Default = "cpu", HelpText = "Where to evaluate (as train --device).")]
    public string Device { get; set; } = "cpu";

    [Option("threads", HelpText = "Threads for the cpu backend (default, and at most: all cores).")]
    public int? Threads { get; set; }

    [Option("format", Default = "text", HelpText = "text or jsonl.")]
    public string Format { get; set; } = "text";
}

[Verb("devices", HelpText = "List every device and whether GpuDinoRnn can use it.")]
public sealed class DevicesVerb : VerbOptions
{
    [Option("threads", HelpText = "Threads for cpu (default, and at most: all cores) and ilgpu-cpu (default: all cores).")]
    public int? Threads { get; set; }
}
