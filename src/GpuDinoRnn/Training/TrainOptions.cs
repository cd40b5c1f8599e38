// Every training option in one record, with its default and meaning. The same record (as JSON)
// is stored in each checkpoint. Presets are whole records; options given on the command line
// are applied on top of the chosen preset.
using System.Text.Json;
using System.Text.Json.Serialization;
using GpuDinoRnn.Backends;
using GpuDinoRnn.Data;
using GpuDinoRnn.Model;

namespace GpuDinoRnn.Training;

/// <summary>What a step with a NaN or infinite loss or gradient does to the run (the step itself is never applied).</summary>
public enum NanPolicy
{
    /// <summary>Stop training with exit code 5; the last good checkpoint is kept.</summary>
    Stop,
    /// <summary>Log it and go on with the next step.</summary>
    Skip,
}

public enum LogFormat
{
    Text,
    Jsonl,
}

/// <remarks>
/// The default recipe (H 192, B 16, Adam lr 0.0015, norm clip 5, 10 epochs, fresh state per
/// name, Xavier init) was picked on the bundled names by validation bits per character over
/// seeds 1–4; it stops early on purpose: with 1,200 names a longer run overfits.
/// </remarks>
public sealed record TrainOptions
{
    /// <summary>Names file, one per line; null means the bundled data/dinos.txt.</summary>
    public string? Data { get; init; }
    /// <summary>names (one per line) or continuous (one long text, the state carried between chunks).</summary>
    public TextMode TextMode { get; init; } = TextMode.Names;
    /// <summary>Continuous text: symbols per stream and step (the BPTT truncation length).</summary>
    public int SeqLength { get; init; } = 64;
    /// <summary>Keep letter case (default: lower-case every name).</summary>
    public bool KeepCase { get; init; }
    /// <summary>Longest name accepted, in characters.</summary>
    public int MaxNameLength { get; init; } = 1000;
    /// <summary>The recurrent cell: rnn (the course's), gru or lstm.</summary>
    public Kernels.CellKind Cell { get; init; } = Kernels.CellKind.Rnn;
    /// <summary>Stacked recurrent layers, each of Hidden units.</summary>
    public int Layers { get; init; } = 1;
    /// <summary>Dropout rate on every layer's output while training (0: off); the mask is seeded by Seed.</summary>
    public float Dropout { get; init; }
    /// <summary>H, hidden units (per layer).</summary>
    public int Hidden { get; init; } = 192;
    /// <summary>B, names per mini-batch.</summary>
    public int Batch { get; init; } = 16;
    /// <summary>SGD learning rate (the loss is a mean over the batch's names).</summary>
    public float Lr { get; init; } = 0.0015f;
    /// <summary>Clip threshold; 0 disables clipping.</summary>
    public float Clip { get; init; } = 5f;
    public ClipMode ClipMode { get; init; } = ClipMode.Norm;
    /// <summary>sgd, momentum, adam, adamw, adagrad or rmsprop.</summary>
    public string Optimizer { get; init; } = "adam";
    /// <summary>Momentum μ (momentum).</summary>
    public float Momentum { get; init; } = 0.9f;
    /// <summary>Adam's β1 and β2 (adam, adamw).</summary>
    public float Beta1 { get; init; } = 0.9f;
    public float Beta2 { get; init; } = 0.999f;
    /// <summary>RMSprop's smoothing constant α.</summary>
    public float Alpha { get; init; } = 0.99f;
    /// <summary>ε in the denominators (adam, adamw, adagrad, rmsprop).</summary>
    public float Eps { get; init; } = 1e-8f;
    /// <summary>AdamW's decoupled weight decay.</summary>
    public float WeightDecay { get; init; } = 0.01f;
    public LrScheduleKind LrSchedule { get; init; } = LrScheduleKind.Constant;
    /// <summary>After a step whose loss or gradient is not finite (and was not applied): stop or skip it.</summary>
    public NanPolicy OnNan { get; init; } = NanPolicy.Stop;
    /// <summary>Iterations of linear learning-rate warm-up.</summary>
    public int Warmup { get; init; }
    /// <summary>Step schedule: multiply the learning rate by LrGamma every this many iterations.</summary>
    public int LrStepEvery { get; init; } = 1000;
    public float LrGamma { get; init; } = 0.5f;
    /// <summary>Cosine schedule: the learning rate at the end.</summary>
    public float MinLr { get; init; }
    /// <summary>Fraction of names held out for validation (seeded); 0 disables validation.</summary>
    public double ValFraction { get; init; } = 0.1;
    /// <summary>Threads for the cpu backend (and the ILGPU CPU emulator).</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;
    /// <summary>Seed of every generator the run owns: split, order, initialisation, samples.</summary>
    public int Seed { get; init; } = 1;
    /// <summary>Iterations (one mini-batch each); when null, Epochs decides.</summary>
    public int? Iterations { get; init; }
    /// <summary>Passes over the training names, used when Iterations is null.</summary>
    public int Epochs { get; init; } = 10;
    public ShuffleMode Shuffle { get; init; } = ShuffleMode.Epoch;
    /// <summary>Carry each name's final hidden state into the next name (batch 1; the course's way).</summary>
    public bool CarryState { get; init; }
    public InitScheme InitScheme { get; init; } = InitScheme.Xavier;
    /// <summary>Start from this checkpoint's weights instead of a random initialisation.</summary>
    public string? Init { get; init; }
    /// <summary>Continue the run saved in this checkpoint exactly where it stopped.</summary>
    public string? Resume { get; init; }
    /// <summary>Write the final model here (safetensors).</summary>
    public string? Checkpoint { get; init; }
    /// <summary>Replace an existing checkpoint file (otherwise an existing file is an error).</summary>
    public bool Overwrite { get; init; }
    /// <summary>Most distinct symbols a names file may hold (a larger vocabulary is probably not a list of names).</summary>
    public int MaxVocab { get; init; } = 1000;
    /// <summary>Also checkpoint every N iterations (0: only at the end).</summary>
    public int CheckpointEvery { get; init; }
    /// <summary>auto, cpu, ilgpu-cpu, cuda, opencl, cuda:N, opencl:N, or an index from `devices`.</summary>
    public string Device { get; init; } = "auto";
    /// <summary>Log every N iterations (iteration 0 and the last are always logged).</summary>
    public int LogEvery { get; init; } = 100;
    public LogFormat LogFormat { get; init; } = LogFormat.Text;
    /// <summary>Validation bits per character every N iterations (0: only at the end).</summary>
    public int EvalEvery { get; init; }
    /// <summary>The run ends with the model of the lowest validation loss (checkpoint, samples, summary), not the last iteration's.</summary>
    public bool KeepBest { get; init; }
    /// <summary>Stop after this many evaluations without a better validation loss (0: never).</summary>
    public int Patience { get; init; }
    /// <summary>Sample names every N iterations (0: only at the end).</summary>
    public int SampleEvery { get; init; }
    /// <summary>Names sampled each time.</summary>
    public int SampleCount { get; init; } = 10;

    /// <summary>
    /// The most names sampled each time. The sample verb sets no limit, but here the names only show how training
    /// goes, drawn on one host thread: a million take half a minute even at H 8, and are more than anyone reads.
    /// </summary>
    public const int MaxSampleCount = 1_000_000;

    /// <summary>Sample as the course notebook does (numpy generator reseeded per character).</summary>
    public bool CourseSampling { get; init; }
    /// <summary>
    /// The cpu backend's tanh and exp from TensorPrimitives (within an ulp or so; the course's
    /// published output is matched with them) instead of FastMath's (within 7 and 2 ulp, a third
    /// of the cost). Only the course preset asks for them, so that its results stay the same.
    /// </summary>
    public bool PreciseMath { get; init; }
    public bool Verbose { get; init; }
    /// <summary>The preset this record started from, if any.</summary>
    public string? Preset { get; init; }

    /// <summary>The "Dinosaurus Island" recipe, exactly (../shared/docs/seed-recipe.md).</summary>
    public static TrainOptions Course { get; } = new()
    {
        Preset = "course",
        Hidden = 50,
        Batch = 1,
        Lr = 0.01f,
        Optimizer = "sgd",
        Clip = 5f,
        ClipMode = ClipMode.Value,
        CarryState = true,
        Iterations = 35_000,
        Shuffle = ShuffleMode.NumpyOnce,
        InitScheme = InitScheme.Numpy,
        ValFraction = 0,
        LogEvery = 2000,
        SampleEvery = 2000,
        SampleCount = 7,
        CourseSampling = true,
        PreciseMath = true,
    };

    /// <summary>
    /// The lowest validation loss found on the bundled names (README, "Models"): two GRU layers
    /// with dropout, stopped at the best validation. Slower than the default; needs the split.
    /// </summary>
    public static TrainOptions Quality { get; } = new()
    {
        Preset = "quality",
        Cell = Kernels.CellKind.Gru,
        Layers = 2,
        Hidden = 192,
        Dropout = 0.3f,
        Lr = 0.003f,
        Epochs = 30,
        EvalEvery = 75,
        Patience = 5,
        KeepBest = true,
    };

    public static TrainOptions ForPreset(string? preset) => preset?.ToLowerInvariant() switch
    {
        null or "" or "default" => new TrainOptions(),
        "course" => Course,
        "quality" => Quality,
        _ => throw new UserError($"unknown preset '{preset}' (known: default, course, quality)"),
    };

    /// <summary>Checks ranges and combinations; throws UserError naming the option.</summary>
    public void Validate()
    {
        Require(Hidden is >= 1 and <= ModelShape.MaxHidden, $"--hidden must be between 1 and {ModelShape.MaxHidden} (got {Hidden})");
        Require(Batch >= 1, $"--batch must be at least 1 (got {Batch})");
        Require(Layers is >= 1 and <= ModelShape.MaxLayers, $"--layers must be between 1 and {ModelShape.MaxLayers} (got {Layers})");
        Require(float.IsFinite(Dropout) && Dropout is >= 0 and < 1, $"--dropout must be in [0, 1) (got {Dropout})");
        Require(InitScheme != InitScheme.Numpy || (Cell == Kernels.CellKind.Rnn && Layers == 1),
            "the course's numpy initialisation (--preset course) is for one rnn layer; use the default preset for --cell gru/lstm or --layers");
        Require(float.IsFinite(Lr) && Lr > 0, $"--lr must be a positive number (got {Lr})");
        Require(float.IsFinite(Clip) && Clip >= 0, $"--clip must be 0 (off) or positive (got {Clip})");
        Require(OptimizerKinds.ContainsKey(Optimizer), $"--optimizer '{Optimizer}' is not available (available: {string.Join(", ", OptimizerKinds.Keys)})");
        Require(Momentum is >= 0 and < 1 && Beta1 is >= 0 and < 1 && Beta2 is >= 0 and < 1 && Alpha is >= 0 and < 1,
            "--momentum, --beta1, --beta2 and --alpha must be in [0, 1)");
        // An infinite ε makes every Adam, Adagrad and RMSprop update zero: training would silently do nothing.
        Require(float.IsFinite(Eps) && Eps > 0, $"--eps must be a positive number (got {Eps})");
        Require(float.IsFinite(WeightDecay) && WeightDecay >= 0, $"--weight-decay must be 0 or more (got {WeightDecay})");
        Require(Warmup >= 0 && LrStepEvery >= 1 && LrGamma is > 0 and <= 1 && MinLr >= 0 && MinLr <= Lr,
            "--warmup must be 0 or more, --lr-step-every at least 1, --lr-gamma in (0, 1], --min-lr between 0 and --lr");
        Require(ValFraction is >= 0 and < 1, $"--val-fraction must be in [0, 1) (got {ValFraction})");
        Require(Threads >= 1, $"--threads must be at least 1 (got {Threads})");
        Require(Iterations is null or >= 1, $"--iterations must be at least 1 (got {Iterations})");
        Require(Epochs >= 1, $"--epochs must be at least 1 (got {Epochs})");
        Require(LogEvery >= 1, $"--log-every must be at least 1 (got {LogEvery})");
        Require(CheckpointEvery >= 0, $"--checkpoint-every must be 0 or more (got {CheckpointEvery})");
        Require(CheckpointEvery == 0 || Checkpoint is not null, "--checkpoint-every needs --checkpoint FILE");
        Require(SampleEvery >= 0 && SampleCount >= 0, "--sample-every and --sample-count must be 0 or more");
        // Not held against a resumed run: its checkpoint may be from before the limit, and --resume cannot change it.
        Require(SampleCount <= MaxSampleCount || Resume is not null,
            $"--sample-count must be at most {MaxSampleCount} (got {SampleCount}); `gpudinornn sample` draws more from a checkpoint");
        Require(MaxNameLength >= 1, $"--max-name-length must be at least 1 (got {MaxNameLength})");
        Require(MaxVocab >= 2, $"--max-vocab must be at least 2 (got {MaxVocab})");
        Require(EvalEvery >= 0 && Patience >= 0, "--eval-every and --patience must be 0 or more");
        Require(!(KeepBest || Patience > 0) || ValFraction > 0, "--keep-best and --patience need a validation split (--val-fraction above 0)");
        Require(!(KeepBest || Patience > 0) || EvalEvery > 0, "--keep-best and --patience need --eval-every N");
        Require(!KeepBest || CheckpointEvery == 0, "--keep-best and --checkpoint-every contradict each other: the checkpoint follows the best model");
        Require(Resume is null || Init is null, "--resume and --init contradict each other: --resume continues a run, --init starts a new one from weights");
        Require(SeqLength >= 1, $"--seq-length must be at least 1 (got {SeqLength})");
        Require(!CarryState || Batch == 1 || TextMode == TextMode.Continuous,
            $"--carry-state{(InitScheme == InitScheme.Numpy ? " (on in --preset course)" : "")} needs --batch 1: the course carries one name's state into the next");
        foreach (var (option, path) in new[] { ("--data", Data), ("--init", Init), ("--resume", Resume), ("--checkpoint", Checkpoint) })
            Require(path is null || !string.IsNullOrWhiteSpace(path), $"{option} needs a file name");
    }

    public static readonly IReadOnlyDictionary<string, Kernels.OptimizerKind> OptimizerKinds = new Dictionary<string, Kernels.OptimizerKind>
    {
        ["sgd"] = Kernels.OptimizerKind.Sgd,
        ["momentum"] = Kernels.OptimizerKind.Momentum,
        ["adam"] = Kernels.OptimizerKind.Adam,
        ["adamw"] = Kernels.OptimizerKind.AdamW,
        ["adagrad"] = Kernels.OptimizerKind.Adagrad,
        ["rmsprop"] = Kernels.OptimizerKind.RmsProp,
    };

    [JsonIgnore]
    public OptimizerConfig OptimizerConfig => new(OptimizerKinds[Optimizer], Momentum, Beta1, Beta2, Eps, WeightDecay, Alpha);

    [JsonIgnore]
    public DropoutConfig DropoutConfig => new(Dropout, Seed);

    /// <summary>Names read lower-cased (the default): printed capitalised, and a --prefix is lower-cased to match.</summary>
    [JsonIgnore]
    public bool LowerCased => !KeepCase && TextMode == TextMode.Names;

    /// <summary>The model these options train on a vocabulary of v symbols.</summary>
    public ModelShape Shape(int v) => new(Hidden, v, Cell, Layers);

    public LrSchedule Schedule(int totalIterations) => new(LrSchedule, Lr, Warmup, totalIterations, LrStepEvery, LrGamma, MinLr);

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>The options a checkpoint was trained with; null when it does not say (another tool wrote it).</summary>
    public static TrainOptions? Stored(string path, IReadOnlyDictionary<string, string> metadata)
    {
        if (!metadata.TryGetValue("options", out var json))
            return null;
        try
        {
            return JsonSerializer.Deserialize<TrainOptions>(json, JsonOptions);
        }
        catch (JsonException e)
        {
            throw new UserError($"checkpoint '{path}': the stored options are damaged ({e.Message})");
        }
    }

    /// <summary>
    /// The options a resumable checkpoint was trained with, to continue with: the same file is
    /// written again, and the device and threads may change (they do not change the result on
    /// one kind of device).
    /// </summary>
    public static TrainOptions ForResume(string path, IReadOnlyDictionary<string, string> metadata)
    {
        var stored = Stored(path, metadata) ?? throw new UserError($"--resume '{path}' does not hold its training options");
        return stored with
        {
            Resume = path,
            Init = null,
            Checkpoint = path,
            Overwrite = true,
        };
    }

    internal static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.KebabCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
    };

    private static void Require(bool ok, string message)
    {
        if (!ok)
            throw new UserError(message);
    }
}
