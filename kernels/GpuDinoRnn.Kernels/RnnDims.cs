// The shapes every kernel takes, as one struct, and the layout of the flat parameter buffer.
namespace GpuDinoRnn.Kernels;

/// <summary>
/// Dimension letters used everywhere: B names in the batch, T time steps (longest name + 1),
/// H hidden units, V vocabulary symbols. Time-major rows: row r = t·B + b.
/// The parameter buffer holds Wax (H,V), Waa (H,H), Wya (V,H), b (H), by (V), in that order,
/// the order of the checkpoint; gradients use the same layout.
/// </summary>
public readonly struct RnnDims
{
    public readonly int B;
    public readonly int T;
    public readonly int H;
    public readonly int V;

    public RnnDims(int b, int t, int h, int v)
    {
        B = b;
        T = t;
        H = h;
        V = v;
    }

    public int WaxOffset => 0;
    public int WaaOffset => H * V;
    public int WyaOffset => H * V + H * H;
    public int BOffset => WyaOffset + V * H;
    public int ByOffset => BOffset + H;
    public int ParameterCount => ByOffset + V;

    /// <summary>Rows of (t, b) pairs in a step.</summary>
    public int Rows => T * B;
}
