// What the trainer trains and evaluates on, whichever the text mode: the batches of each step
// (with where a carried state must start over), the evaluation batches, and the position to
// store for --resume.
namespace GpuDinoRnn.Data;

public enum TextMode
{
    /// <summary>One name per line; each name from a fresh (or the course's carried) state.</summary>
    Names,
    /// <summary>One long text in parallel streams, the state carried between chunks (char-rnn's).</summary>
    Continuous,
}

public sealed class TrainingData
{
    private readonly Batcher? _names;
    private readonly TextStreams? _text;
    private readonly Func<IEnumerable<Batch>> _trainBatches, _valBatches;

    private TrainingData(Batcher? names, TextStreams? text, Func<IEnumerable<Batch>> train, Func<IEnumerable<Batch>> val,
        int trainCount, int valCount, string unit)
    {
        (_names, _text, _trainBatches, _valBatches) = (names, text, train, val);
        (TrainCount, ValCount, Unit) = (trainCount, valCount, unit);
    }

    public int TrainCount { get; }
    public int ValCount { get; }
    /// <summary>What TrainCount and ValCount count, for the log.</summary>
    public string Unit { get; }
    public bool Continuous => _text is not null;
    public int StepsPerEpoch => _names?.BatchesPerEpoch ?? _text!.StepsPerEpoch;

    public static TrainingData ForNames(IReadOnlyList<int[]> train, IReadOnlyList<int[]> val, int batch, ShuffleMode shuffle, int seed) =>
        new(new Batcher(train, batch, shuffle, seed), null,
            () => Batcher.Cover(train, 256), () => Batcher.Cover(val, 256), train.Count, val.Count, "names");

    public static TrainingData ForText(int[] train, int[] val, int streams, int seqLength) =>
        new(null, new TextStreams(train, streams, seqLength),
            () => TextStreams.Chunks(train, seqLength, 256), () => TextStreams.Chunks(val, seqLength, 256),
            train.Length, val.Length, "symbols");

    /// <summary>The next step's batch; resetState when carried states must start from zero.</summary>
    public Batch Next(out bool resetState)
    {
        if (_text is not null)
            return _text.Next(out resetState);
        resetState = false;
        return _names!.Next();
    }

    public IEnumerable<Batch> TrainBatches() => _trainBatches();

    public IEnumerable<Batch> ValBatches() => _valBatches();

    public BatcherState State
    {
        get => _names?.State ?? new BatcherState(_text!.Epoch, _text.Position, [], []);
        set
        {
            if (_names is not null)
                _names.State = value;
            else
                _text!.Restore(value.Epoch, value.Position);
        }
    }
}
