// The shapes of a model of any cell and depth, as one struct the kernels take, and the layout of
// its flat parameter buffer. RnnDims is the same thing for the one-layer vanilla model.
namespace GpuDinoRnn.Kernels;

/// <summary>The recurrent cells; the numbers are what the kernels switch on.</summary>
public enum CellKind
{
    /// <summary>h = tanh(Wax·u + Waa·h₋ + b): the course's cell.</summary>
    Rnn = 0,
    /// <summary>Gated recurrent unit, gates [r; z; n] in PyTorch's order.</summary>
    Gru = 1,
    /// <summary>Long short-term memory, gates [i; f; g; o] in PyTorch's order.</summary>
    Lstm = 2,
}

/// <summary>
/// B names, T time steps, H hidden units per layer, V symbols, L layers of one cell kind with
/// G gates each (rnn 1, gru 3, lstm 4). Rows are time-major, r = t·B + b, as in RnnDims.
/// Layer l holds Wax (G·H, In) with In = V for layer 0 and H above it, Waa (G·H, H) and b (G·H),
/// gate blocks of H rows in the cell's order; then the output layer Wya (V, H) and by (V).
/// Buffer order: every layer's Wax, Waa, b, then Wya, by; except the one-layer vanilla model,
/// which keeps the course's order Wax, Waa, Wya, b, by (RnnDims).
/// </summary>
public readonly struct StackDims
{
    public readonly int B;
    public readonly int T;
    public readonly int H;
    public readonly int V;
    public readonly int Layers;
    public readonly CellKind Cell;

    public StackDims(int b, int t, int h, int v, CellKind cell, int layers)
    {
        B = b;
        T = t;
        H = h;
        V = v;
        Cell = cell;
        Layers = layers;
    }

    public int Gates => Cell == CellKind.Gru ? 3 : Cell == CellKind.Lstm ? 4 : 1;

    /// <summary>Rows of a layer's gate pre-activations: G·H.</summary>
    public int GH => Gates * H;

    /// <summary>Floats of state per name and layer: h, and c for the LSTM.</summary>
    public int StatePerLayer => Cell == CellKind.Lstm ? 2 * H : H;

    private bool CourseOrder => Cell == CellKind.Rnn && Layers == 1;

    public int InputsOf(int layer) => layer == 0 ? V : H;

    public int WaxOffset(int layer) => layer == 0 ? 0 : GH * (V + H + 1) + (layer - 1) * GH * (2 * H + 1);

    public int WaaOffset(int layer) => WaxOffset(layer) + GH * InputsOf(layer);

    public int BOffset(int layer) => CourseOrder ? ByOffset - H : WaaOffset(layer) + GH * H;

    public int WyaOffset => CourseOrder ? H * V + H * H : WaxOffset(Layers);

    public int ByOffset => CourseOrder ? WyaOffset + V * H + H : WyaOffset + V * H;

    public int ParameterCount => ByOffset + V;

    /// <summary>ParameterCount in long, for the check that it fits int: the offsets above wrap beyond it.</summary>
    public long ParameterCountWide => (long)GH * (V + H + 1) + (Layers - 1L) * GH * (2L * H + 1) + (long)V * H + V;

    public int Rows => T * B;
}
