// The laptop fallback for every model beyond the course's one vanilla layer: gru and lstm cells,
// stacked layers, dropout. The same step as StackKernels, in managed code: the cells' arithmetic
// is CpuCells, the matrix products are CpuKernels' SIMD tiles.
//
// Like CpuBackend, only real characters are worked on: rows are packed step by step (row
// start(t) + b for the Active(t) names running at step t). Only the recurrences go step by step;
// each layer's input projection (Wax·u + b), the output layer, the gradient handed to the layer
// below and every weight gradient are one product over all rows. Weights are kept flat (the
// checkpoint's layout, which the optimizer updates) with padded copies for the products, each
// gate's block starting at a multiple of the vector width (gs = Hp), refreshed after each update.
// One thread: the products are the bulk of the work and a split would change no result.
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;

namespace GpuDinoRnn.Backends;

public sealed unsafe class CpuStackBackend : IBackend
{
    private readonly StackDims _d;
    private readonly int _h, _v, _hp, _vp, _ghp, _layers;
    private readonly CellKind _cell;
    private readonly DropoutConfig _dropout;

    private readonly float[] _p, _g, _m1, _m2;   // flat, in the layout of StackDims
    private long _updates;
    private float _lastSumSquares;

    // Padded copies per layer l: WaxT (In, GHp), WaaT (H, GHp), Waa (GHp, Hp), Wax (GHp, Hp) for l > 0, b (GHp).
    private readonly PinnedFloats[] _waxT, _waaT, _waa, _wax, _bias;
    private readonly PinnedFloats _wyaT, _wya, _byRow;          // Wyaᵀ (H, Vp), Wya (V, Hp), by (Vp) with −∞ padding
    // Gradients in the copies' layouts.
    private readonly PinnedFloats[] _gWaxT, _gWaaT, _gBias;
    private readonly PinnedFloats _gWya, _gBy;

    // Per batch, packed rows R = batch.Chars; per layer unless said.
    private int _capacity;
    private PinnedFloats[] _hs = [], _cs = [], _prevH = [], _prevC = [], _act = [], _an = [], _u = [];
    private PinnedFloats _top = new(0), _px = new(0), _pa = new(0), _dy = new(0);  // _top: the output layer's input
    private PinnedFloats _gh = new(0), _gc = new(0), _dpx = new(0), _dpa = new(0);
    private double[] _rowLoss = [];
    private int[] _x = [], _y = [], _active = [], _start = [];
    private Batch _batch = null!;
    private int _rows;

    private float[] _carry;   // (names, StateSize)
    private int _carried;
    private readonly List<float> _losses = [];

    public CpuStackBackend(ModelShape shape, DropoutConfig dropout)
    {
        Shape = shape;
        _d = shape.Stack(1, 1);
        _dropout = dropout;
        _h = shape.H;
        _v = shape.V;
        _cell = shape.Cell;
        _layers = shape.Layers;
        _hp = CpuKernels.Padded(_h);
        _vp = CpuKernels.Padded(_v);
        _ghp = _d.Gates * _hp;
        _p = new float[_d.ParameterCount];
        _g = new float[_d.ParameterCount];
        _m1 = new float[_d.ParameterCount];
        _m2 = new float[_d.ParameterCount];
        PinnedFloats[] PerLayer(Func<int, int> size) => Enumerable.Range(0, _layers).Select(l => new PinnedFloats(size(l))).ToArray();
        _waxT = PerLayer(l => _d.InputsOf(l) * _ghp);
        _waaT = PerLayer(_ => _h * _ghp);
        _waa = PerLayer(_ => _ghp * _hp);
        _wax = PerLayer(l => l == 0 ? 0 : _ghp * _hp);
        _bias = PerLayer(_ => _ghp);
        _gWaxT = PerLayer(l => _d.InputsOf(l) * _ghp);
        _gWaaT = PerLayer(_ => _h * _ghp);
        _gBias = PerLayer(_ => _ghp);
        _wyaT = new PinnedFloats(_h * _vp);
        _wya = new PinnedFloats(_v * _hp);
        _byRow = new PinnedFloats(_vp);
        _gWya = new PinnedFloats(_v * _hp);
        _gBy = new PinnedFloats(_vp);
        _carry = [];
        RefreshCopies();
    }

    public string Device => "cpu (1 thread)";
    public int LaunchesPerStep => 0;
    public ModelShape Shape { get; }

    public void Upload(Parameters parameters)
    {
        parameters.Data.CopyTo(_p, 0);
        RefreshCopies();
    }

    public void Download(Parameters parameters) => _p.CopyTo(parameters.Data, 0);

    public void ResetState()
    {
        Array.Clear(_carry);
        _carried = 0;
    }

    public float LastGradientNorm() => MathF.Sqrt(_lastSumSquares);

    public void DownloadGradients(Span<float> gradients) => _g.CopyTo(gradients);

    public BackendState SaveState() =>
        new(_updates, (float[])_m1.Clone(), (float[])_m2.Clone(), _carry.AsSpan(0, _carried * Shape.StateSize).ToArray());

    public void LoadState(BackendState state)
    {
        _updates = state.Updates;
        state.M.CopyTo(_m1, 0);
        state.V.CopyTo(_m2, 0);
        _carried = state.Carry.Length / Shape.StateSize;
        EnsureCarry(_carried);
        Array.Clear(_carry);
        state.Carry.CopyTo(_carry, 0);
    }

    public void Step(Batch batch, StepSettings s)
    {
        double loss = ForwardAndBackward(batch, s.CarryState, _dropout.ForUpdate(_updates + 1));
        _lastSumSquares = TensorPrimitives.SumOfSquares<float>(_g);
        // As the device records it: a non-finite gradient reads as a NaN loss, and such a step is not applied.
        float recorded = _lastSumSquares <= float.MaxValue ? (float)loss : float.NaN;
        var update = s.ForUpdate(++_updates);
        if (float.IsFinite(recorded))
        {
            CpuOptimizer.Update(_p, _g, _m1, _m2, update, _lastSumSquares);
            RefreshCopies();
        }
        _losses.Add(recorded);
        if (s.CarryState)
            KeepFinalStates();
    }

    public float[] TakeLosses()
    {
        var result = _losses.ToArray();
        _losses.Clear();
        return result;
    }

    public float Gradients(Batch batch, bool carryState, Span<float> gradients)
    {
        float loss = (float)ForwardAndBackward(batch, carryState, _dropout.ForUpdate(_updates + 1));
        _g.CopyTo(gradients);
        return loss;
    }

    public double EvaluateSum(Batch batch)
    {
        Forward(batch, carryIn: false, DropoutSettings.None);
        OutputLayer(withGradients: false);
        double total = 0;
        for (int r = 0; r < _rows; r++)
            total += _rowLoss[r];
        return total;
    }

    public void Dispose()
    {
    }

    private double ForwardAndBackward(Batch batch, bool carryIn, DropoutSettings drop)
    {
        Forward(batch, carryIn, drop);
        OutputLayer(withGradients: true);
        Backward(drop);
        double total = 0;
        for (int r = 0; r < _rows; r++)
            total += _rowLoss[r];
        return total / batch.B;
    }

    private float* Row(PinnedFloats buffer, int row, int width) => buffer.Ptr + (long)row * width;

    private Span<float> RowSpan(PinnedFloats buffer, int row, int width) => new(Row(buffer, row, width), width);

    /// <summary>Packs the batch's rows and makes room for them; allocates only for a batch larger than any before.</summary>
    private void Prepare(Batch batch)
    {
        _batch = batch;
        _rows = batch.Chars;
        if (_rows > _capacity)
        {
            int n = Math.Max(_rows, _capacity * 3 / 2);
            PinnedFloats[] PerLayer(int width, bool needed) => Enumerable.Range(0, _layers).Select(_ => new PinnedFloats(needed ? n * width : 0)).ToArray();
            bool lstm = _cell == CellKind.Lstm;
            _hs = PerLayer(_hp, true);
            _prevH = PerLayer(_hp, true);
            _cs = PerLayer(_hp, lstm);
            _prevC = PerLayer(_hp, lstm);
            _act = PerLayer(_ghp, true);
            _an = PerLayer(_hp, _cell == CellKind.Gru);
            _u = PerLayer(_hp, true);
            _top = new PinnedFloats(n * _hp);
            _px = new PinnedFloats(n * _ghp);
            _pa = new PinnedFloats(n * _ghp);
            _dpx = new PinnedFloats(n * _ghp);
            _dpa = new PinnedFloats(n * _ghp);
            _dy = new PinnedFloats(n * _vp);
            _gh = new PinnedFloats(n * _hp);
            _gc = new PinnedFloats(lstm ? n * _hp : 0);
            _rowLoss = new double[n];
            _x = new int[n];
            _y = new int[n];
            _capacity = n;
        }
        if (_active.Length < batch.T)
        {
            _active = new int[batch.T];
            _start = new int[batch.T];
        }
        int row = 0;
        for (int t = 0; t < batch.T; t++)
        {
            _active[t] = batch.Active(t);
            _start[t] = row;
            for (int b = 0; b < _active[t]; b++, row++)
            {
                _x[row] = batch.X[t * batch.B + b];
                _y[row] = batch.Y[t * batch.B + b];
            }
        }
    }

    /// <summary>Every layer over all steps, bottom to top; the top layer's output (dropped out) in _top.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Forward(Batch batch, bool carryIn, DropoutSettings drop)
    {
        Prepare(batch);
        if (carryIn)
            EnsureCarry(batch.B);
        int hp = _hp, ghp = _ghp, rows = _rows;
        for (int l = 0; l < _layers; l++)
        {
            // The input projection px = Wax·u + b of every row at once.
            for (int r = 0; r < rows; r++)
            {
                _bias[l].Span.CopyTo(RowSpan(_px, r, ghp));
                if (l == 0 && _x[r] >= 0)
                    CpuKernels.Add(Row(_px, r, ghp), Row(_waxT[0], _x[r], ghp), Row(_px, r, ghp), ghp);
            }
            if (l > 0)
            {
                Dropout(_hs[l - 1], _u[l], l, drop);
                CpuKernels.AddProduct(_px.Ptr, ghp, _u[l].Ptr, hp, _waxT[l].Ptr, ghp, rows, _h, ghp);
            }
            for (int t = 0; t < batch.T; t++)
            {
                int n = _active[t], r0 = _start[t];
                // The state each row starts from: the name's previous row, or the initial state.
                for (int b = 0; b < n; b++)
                {
                    var prevH = RowSpan(_prevH[l], r0 + b, hp);
                    var prevC = _cell == CellKind.Lstm ? RowSpan(_prevC[l], r0 + b, hp) : default;
                    if (t > 0)
                    {
                        RowSpan(_hs[l], _start[t - 1] + b, hp).CopyTo(prevH);
                        if (_cell == CellKind.Lstm)
                            RowSpan(_cs[l], _start[t - 1] + b, hp).CopyTo(prevC);
                        continue;
                    }
                    prevH.Clear();
                    prevC.Clear();
                    if (carryIn)
                    {
                        var state = _carry.AsSpan(b * Shape.StateSize + l * _d.StatePerLayer, _d.StatePerLayer);
                        state[.._h].CopyTo(prevH);
                        if (_cell == CellKind.Lstm)
                            state[_h..].CopyTo(prevC);
                    }
                }
                new Span<float>(Row(_pa, r0, ghp), n * ghp).Clear();
                CpuKernels.AddProduct(Row(_pa, r0, ghp), ghp, Row(_prevH[l], r0, hp), hp, _waaT[l].Ptr, ghp, n, _h, ghp);
                for (int r = r0; r < r0 + n; r++)
                {
                    bool lstm = _cell == CellKind.Lstm, gru = _cell == CellKind.Gru;
                    CpuCells.Forward(_cell, _h, hp, RowSpan(_px, r, ghp), RowSpan(_pa, r, ghp), RowSpan(_prevH[l], r, hp),
                        lstm ? RowSpan(_prevC[l], r, hp) : default, RowSpan(_act[l], r, ghp), gru ? RowSpan(_an[l], r, hp) : default,
                        RowSpan(_hs[l], r, hp), lstm ? RowSpan(_cs[l], r, hp) : default);
                }
            }
        }
        Dropout(_hs[_layers - 1], _top, _layers, drop);
    }

    /// <summary>dst = src ⊙ the dropout factors of input `input` for every row (a copy without dropout).</summary>
    private void Dropout(PinnedFloats src, PinnedFloats dst, int input, DropoutSettings drop)
    {
        new Span<float>(src.Ptr, _rows * _hp).CopyTo(new Span<float>(dst.Ptr, _rows * _hp));
        if (drop.P <= 0f)
            return;
        for (int t = 0; t < _batch.T; t++)
            for (int b = 0; b < _active[t]; b++)
            {
                float* row = Row(dst, _start[t] + b, _hp);
                for (int i = 0; i < _h; i++)
                    row[i] *= drop.Factor(input, t, b, i);
            }
    }

    /// <summary>Logits = Wya·top + by, softmax, cross-entropy and dy = (softmax − onehot)/B for all rows (as CpuBackend.OutputLayer).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void OutputLayer(bool withGradients)
    {
        int vp = _vp, rows = _rows;
        float gradScale = 1f / _batch.B;
        for (int r = 0; r < rows; r++)
            _byRow.Span.CopyTo(RowSpan(_dy, r, vp));
        CpuKernels.AddProduct(_dy.Ptr, vp, _top.Ptr, _hp, _wyaT.Ptr, vp, rows, _h, vp);
        for (int r = 0; r < rows; r++)
        {
            float* z = Row(_dy, r, vp);
            float max = z[0];
            for (int k = 1; k < _v; k++)
                max = MathF.Max(max, z[k]);
            float target = z[_y[r]] - max;
            float sum = 0f;
            for (int k = 0; k < _v; k++)
                sum += z[k] = MathF.Exp(z[k] - max);
            for (int k = _v; k < vp; k++)
                z[k] = 0f;
            _rowLoss[r] = MathF.Log(sum) - target;
            if (!withGradients)
                continue;
            float scale = gradScale / sum;
            for (int k = 0; k < _v; k++)
                z[k] *= scale;
            z[_y[r]] -= gradScale;
        }
    }

    /// <summary>Backpropagation through time, top layer first, then every gradient into the flat buffer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Backward(DropoutSettings drop)
    {
        int hp = _hp, ghp = _ghp, rows = _rows;
        bool lstm = _cell == CellKind.Lstm, gru = _cell == CellKind.Gru;
        // The output layer: dWya = Σ dy·topᵀ, dby = Σ dy, and the top layer's gradient Wyaᵀ·dy, dropped out.
        _gWya.Span.Clear();
        CpuKernels.AddTransposedProduct(_gWya.Ptr, hp, 0, _v, _dy.Ptr, _vp, _top.Ptr, hp, rows, hp);
        _gBy.Span.Clear();
        for (int r = 0; r < rows; r++)
            CpuKernels.Add(_gBy.Ptr, Row(_dy, r, _vp), _gBy.Ptr, _vp);
        new Span<float>(_gh.Ptr, rows * hp).Clear();
        CpuKernels.AddProduct(_gh.Ptr, hp, _dy.Ptr, _vp, _wya.Ptr, hp, rows, _v, hp);
        Dropout(_gh, _gh, _layers, drop);

        for (int l = _layers - 1; l >= 0; l--)
        {
            if (lstm)
                new Span<float>(_gc.Ptr, rows * hp).Clear();
            for (int t = _batch.T - 1; t >= 0; t--)
            {
                int n = _active[t], r0 = _start[t];
                for (int b = 0; b < n; b++)
                {
                    int r = r0 + b, prev = t > 0 ? _start[t - 1] + b : -1;
                    CpuCells.Backward(_cell, _h, hp, RowSpan(_act[l], r, ghp), gru ? RowSpan(_an[l], r, hp) : default,
                        RowSpan(_prevH[l], r, hp), lstm ? RowSpan(_prevC[l], r, hp) : default, lstm ? RowSpan(_cs[l], r, hp) : default,
                        RowSpan(_gh, r, hp), lstm ? RowSpan(_gc, r, hp) : default, RowSpan(_dpx, r, ghp), RowSpan(_dpa, r, ghp),
                        prev >= 0 ? RowSpan(_gh, prev, hp) : default, prev >= 0 && lstm ? RowSpan(_gc, prev, hp) : default);
                }
                if (t > 0)
                    CpuKernels.AddProduct(Row(_gh, _start[t - 1], hp), hp, Row(_dpa, r0, ghp), ghp, _waa[l].Ptr, hp, n, ghp, hp);
            }
            // This layer's weight gradients, summed over all rows at once.
            _gWaaT[l].Span.Clear();
            CpuKernels.AddTransposedProduct(_gWaaT[l].Ptr, ghp, 0, _h, _prevH[l].Ptr, hp, _dpa.Ptr, ghp, rows, ghp);
            _gBias[l].Span.Clear();
            _gWaxT[l].Span.Clear();
            for (int r = 0; r < rows; r++)
            {
                CpuKernels.Add(_gBias[l].Ptr, Row(_dpx, r, ghp), _gBias[l].Ptr, ghp);
                if (l == 0 && _x[r] >= 0)
                    CpuKernels.Add(Row(_gWaxT[0], _x[r], ghp), Row(_dpx, r, ghp), Row(_gWaxT[0], _x[r], ghp), ghp);
            }
            if (l == 0)
                continue;
            CpuKernels.AddTransposedProduct(_gWaxT[l].Ptr, ghp, 0, _h, _u[l].Ptr, hp, _dpx.Ptr, ghp, rows, ghp);
            // The layer below's gradient: Waxᵀ·dpx, through the same dropout as its output.
            new Span<float>(_gh.Ptr, rows * hp).Clear();
            CpuKernels.AddProduct(_gh.Ptr, hp, _dpx.Ptr, ghp, _wax[l].Ptr, hp, rows, ghp, hp);
            Dropout(_gh, _gh, l, drop);
        }
        GatherGradients();
    }

    /// <summary>The padded gradients into the flat buffer.</summary>
    private void GatherGradients()
    {
        int gs = _hp;
        for (int l = 0; l < _layers; l++)
        {
            int wax = _d.WaxOffset(l), waa = _d.WaaOffset(l), bias = _d.BOffset(l), inputs = _d.InputsOf(l);
            for (int g = 0; g < _d.Gates; g++)
                for (int i = 0; i < _h; i++)
                {
                    int row = g * _h + i, col = g * gs + i;
                    for (int j = 0; j < inputs; j++)
                        _g[wax + row * inputs + j] = _gWaxT[l].Ptr[(long)j * _ghp + col];
                    for (int j = 0; j < _h; j++)
                        _g[waa + row * _h + j] = _gWaaT[l].Ptr[(long)j * _ghp + col];
                    _g[bias + row] = _gBias[l].Ptr[col];
                }
        }
        for (int k = 0; k < _v; k++)
        {
            new Span<float>(Row(_gWya, k, _hp), _h).CopyTo(_g.AsSpan(_d.WyaOffset + k * _h, _h));
            _g[_d.ByOffset + k] = _gBy.Ptr[k];
        }
    }

    /// <summary>The padded copies of the flat weights, after an upload or an update.</summary>
    private void RefreshCopies()
    {
        int gs = _hp;
        for (int l = 0; l < _layers; l++)
        {
            int wax = _d.WaxOffset(l), waa = _d.WaaOffset(l), bias = _d.BOffset(l), inputs = _d.InputsOf(l);
            for (int g = 0; g < _d.Gates; g++)
                for (int i = 0; i < _h; i++)
                {
                    int row = g * _h + i, col = g * gs + i;
                    for (int j = 0; j < inputs; j++)
                        _waxT[l].Ptr[(long)j * _ghp + col] = _p[wax + row * inputs + j];
                    for (int j = 0; j < _h; j++)
                        _waaT[l].Ptr[(long)j * _ghp + col] = _p[waa + row * _h + j];
                    _p.AsSpan(waa + row * _h, _h).CopyTo(RowSpan(_waa[l], col, _hp));
                    if (l > 0)
                        _p.AsSpan(wax + row * inputs, _h).CopyTo(RowSpan(_wax[l], col, _hp));
                    _bias[l].Ptr[col] = _p[bias + row];
                }
        }
        for (int k = 0; k < _v; k++)
        {
            _p.AsSpan(_d.WyaOffset + k * _h, _h).CopyTo(RowSpan(_wya, k, _hp));
            for (int i = 0; i < _h; i++)
                _wyaT.Ptr[(long)i * _vp + k] = _p[_d.WyaOffset + k * _h + i];
        }
        _byRow.Span.Fill(float.NegativeInfinity);
        _p.AsSpan(_d.ByOffset, _v).CopyTo(_byRow.Span);
    }

    /// <summary>Each name's state after its last step, every layer (h, then c for the LSTM).</summary>
    private void KeepFinalStates()
    {
        EnsureCarry(_batch.B);
        for (int b = 0; b < _batch.B; b++)
        {
            int row = _start[_batch.Lengths[b] - 1] + b;
            for (int l = 0; l < _layers; l++)
            {
                var state = _carry.AsSpan(b * Shape.StateSize + l * _d.StatePerLayer, _d.StatePerLayer);
                RowSpan(_hs[l], row, _hp)[.._h].CopyTo(state);
                if (_cell == CellKind.Lstm)
                    RowSpan(_cs[l], row, _hp)[.._h].CopyTo(state[_h..]);
            }
        }
        _carried = _batch.B;
    }

    /// <summary>Room to carry the state of b names (new ones start from zeros).</summary>
    private void EnsureCarry(int b)
    {
        if (_carry.Length < b * Shape.StateSize)
            Array.Resize(ref _carry, b * Shape.StateSize);
    }
}
