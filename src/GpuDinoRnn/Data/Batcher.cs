// The order in which training names are visited, cut into mini-batches.
namespace GpuDinoRnn.Data;

public enum ShuffleMode
{
    /// <summary>A new seeded order every epoch (the default).</summary>
    Epoch,
    /// <summary>One shuffle with numpy's legacy generator (seed 0), then cyclic: the course's order.</summary>
    NumpyOnce,
    /// <summary>The data file's order, cyclic.</summary>
    None,
}

/// <param name="Order">The current epoch's permutation of the names.</param>
/// <param name="Random">The shuffle generator's state.</param>
public sealed record BatcherState(int Epoch, int Position, int[] Order, ulong[] Random);

/// <summary>
/// Hands out batches forever: consecutive names of the current order, B at a time; the last
/// batch of an epoch may be smaller. Iteration j of the course (B = 1) uses name j mod N.
/// </summary>
public sealed class Batcher
{
    private readonly int[][] _names;
    private readonly int _batch;
    private readonly ShuffleMode _mode;
    private readonly ShuffleRandom _random;
    private readonly int[] _order;
    private int _position;

    public Batcher(IReadOnlyList<int[]> names, int batchSize, ShuffleMode mode, int seed)
    {
        if (names.Count == 0)
            throw new UserError("there are no training names");
        _names = names.ToArray();
        _batch = Math.Min(batchSize, _names.Length);
        _mode = mode;
        _random = new ShuffleRandom(seed);
        _order = Enumerable.Range(0, _names.Length).ToArray();
        if (mode == ShuffleMode.NumpyOnce)
            new Training.NumpyRandom(0).Shuffle(_order);
        else if (mode == ShuffleMode.Epoch)
            _random.Shuffle(_order);
    }

    /// <summary>Completed passes over the data.</summary>
    public int Epoch { get; private set; }

    /// <summary>Where the batcher is: enough to continue the same sequence of batches after a restart.</summary>
    public BatcherState State
    {
        get => new(Epoch, _position, _order.ToArray(), _random.State);
        set
        {
            if (value.Order.Length != _order.Length || value.Order.Order().Where((v, i) => v != i).Any() ||
                value.Position < 0 || value.Position >= _order.Length)
                throw new UserError("the stored data order does not fit this data: was the names file changed?");
            Epoch = value.Epoch;
            _position = value.Position;
            value.Order.CopyTo(_order, 0);
            _random.State = value.Random;
        }
    }

    /// <summary>Batches in one epoch.</summary>
    public int BatchesPerEpoch => (_names.Length + _batch - 1) / _batch;

    public Batch Next()
    {
        int count = Math.Min(_batch, _names.Length - _position);
        var picked = new int[count][];
        for (int n = 0; n < count; n++)
            picked[n] = _names[_order[_position + n]];
        _position += count;
        if (_position == _names.Length)
        {
            _position = 0;
            Epoch++;
            if (_mode == ShuffleMode.Epoch)
                _random.Shuffle(_order);
        }
        return Batch.FromEncoded(picked);
    }

    /// <summary>Batches covering every name once, in the given order (for evaluation).</summary>
    public static IEnumerable<Batch> Cover(IReadOnlyList<int[]> names, int batchSize)
    {
        for (int i = 0; i < names.Count; i += batchSize)
            yield return Batch.FromEncoded(names.Skip(i).Take(batchSize).ToArray());
    }
}
