// Continuous-text mode (char-rnn's): the corpus is one long text, cut into B parallel streams;
// each step reads the next T symbols of every stream and predicts each one's successor, and the
// hidden state is carried from one chunk of a stream to the next (truncated backpropagation
// through time). At the end of a pass the streams start over from zero states.
namespace GpuDinoRnn.Data;

public sealed class TextStreams
{
    private readonly int[] _ids;
    private readonly int _streams, _length, _seqLength;

    /// <param name="ids">The encoded text.</param>
    /// <param name="streams">B.</param>
    /// <param name="seqLength">T, symbols per step and stream.</param>
    public TextStreams(int[] ids, int streams, int seqLength)
    {
        _ids = ids;
        _seqLength = seqLength;
        _streams = Math.Max(1, Math.Min(streams, (ids.Length - 1) / seqLength));
        _length = (ids.Length - 1) / _streams; // each stream needs one more symbol than it reads
        if (_length < seqLength)
            throw new UserError($"the text ({ids.Length} symbols) is shorter than one --seq-length {seqLength} chunk plus one");
    }

    /// <summary>Steps in one pass over the text.</summary>
    public int StepsPerEpoch => _length / _seqLength;

    public int Streams => _streams;

    public int Epoch { get; private set; }

    /// <summary>The next step's chunk position, in steps since the start of the pass.</summary>
    public int Position { get; set; }

    /// <summary>The next chunk of every stream; startsPass says the carried states must be reset first.</summary>
    public Batch Next(out bool startsPass)
    {
        startsPass = Position == 0;
        var inputs = new int[_streams][];
        var targets = new int[_streams][];
        for (int b = 0; b < _streams; b++)
        {
            int start = b * _length + Position * _seqLength;
            inputs[b] = _ids.AsSpan(start, _seqLength).ToArray();
            targets[b] = _ids.AsSpan(start + 1, _seqLength).ToArray();
        }
        if (++Position == StepsPerEpoch)
        {
            Position = 0;
            Epoch++;
        }
        return Batch.FromStreams(inputs, targets);
    }

    public void Restore(int epoch, int position)
    {
        if (position < 0 || position >= StepsPerEpoch)
            throw new UserError("the stored text position does not fit this text: was the file changed?");
        (Epoch, Position) = (epoch, position);
    }

    /// <summary>A text cut into chunks of T for evaluation (each from a zero state), B at a time.</summary>
    public static IEnumerable<Batch> Chunks(int[] ids, int seqLength, int batch)
    {
        var chunks = new List<(int[] X, int[] Y)>();
        for (int start = 0; start + seqLength < ids.Length; start += seqLength)
            chunks.Add((ids[start..(start + seqLength)], ids[(start + 1)..(start + seqLength + 1)]));
        for (int i = 0; i < chunks.Count; i += batch)
        {
            var part = chunks.Skip(i).Take(batch).ToList();
            yield return Batch.FromStreams(part.Select(c => c.X).ToList(), part.Select(c => c.Y).ToList());
        }
    }
}
