// The size of a model: hidden units H and vocabulary V (one vanilla tanh layer).
using GpuDinoRnn.Kernels;

namespace GpuDinoRnn.Model;

public readonly record struct ModelShape(int H, int V)
{
    public const string Cell = "rnn";

    /// <summary>The kernels' shape struct for a step of B names and T time steps.</summary>
    public RnnDims Dims(int b, int t) => new(b, t, H, V);

    public int ParameterCount => Dims(1, 1).ParameterCount;
}
