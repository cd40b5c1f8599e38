// The size of a model: the cell, how many layers, hidden units H per layer and vocabulary V.
using GpuDinoRnn.Kernels;

namespace GpuDinoRnn.Model;

public readonly record struct ModelShape(int H, int V, CellKind Cell = CellKind.Rnn, int Layers = 1)
{
    /// <summary>The deepest stack --layers accepts.</summary>
    public const int MaxLayers = 16;

    /// <summary>The most hidden units per layer --hidden accepts, and a checkpoint may hold.</summary>
    public const int MaxHidden = 4096;

    /// <summary>One vanilla layer: the course's model, which has its own fast backends and kernels.</summary>
    public bool IsVanilla => Cell == CellKind.Rnn && Layers == 1;

    /// <summary>The kernels' shape struct of the one-layer vanilla model for a step of B names and T time steps.</summary>
    public RnnDims Dims(int b, int t) => new(b, t, H, V);

    /// <summary>The shape struct of any model for a step of B names and T time steps.</summary>
    public StackDims Stack(int b, int t) => new(b, t, H, V, Cell, Layers);

    public int ParameterCount => Stack(1, 1).ParameterCount;

    /// <summary>
    /// The most weights a model may have: a kernel over every weight indexes them with int, and
    /// its last group of threads (up to 1,024) runs past the count, so 2³¹ − 1,024, not int.MaxValue.
    /// </summary>
    public const int MaxWeights = int.MaxValue - 1023;

    /// <summary>
    /// Fails unless the weights fit one buffer that the kernels index (ParameterCount wraps past
    /// int): --hidden 4096 with 16 LSTM layers and thousands of symbols does not.
    /// </summary>
    public void CheckSize()
    {
        long count = Stack(1, 1).ParameterCountWide;
        if (count > MaxWeights)
            throw new UserError(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"a {CellName} model of {Layers} layer(s), H {H} and {V} symbols has {count:N0} weights, more than {MaxWeights:N0}: use a smaller --hidden or fewer --layers"));
    }

    /// <summary>Floats of recurrent state per name: every layer's h, and its c for the LSTM.</summary>
    public int StateSize => Layers * Stack(1, 1).StatePerLayer;

    /// <summary>The name of the cell as the command line and checkpoints spell it.</summary>
    public string CellName => CellNames.Of(Cell);
}

public static class CellNames
{
    public static string Of(CellKind cell) => cell switch
    {
        CellKind.Gru => "gru",
        CellKind.Lstm => "lstm",
        _ => "rnn",
    };

    public static CellKind? Parse(string name) => name switch
    {
        "rnn" => CellKind.Rnn,
        "gru" => CellKind.Gru,
        "lstm" => CellKind.Lstm,
        _ => null,
    };
}
