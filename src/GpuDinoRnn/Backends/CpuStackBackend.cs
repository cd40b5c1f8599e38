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
//
// Threads (as CpuBackend): the recurrences split the names, the all-row products split the rows,
// the weight gradients split their output rows; every output element is summed by one thread in
// a fixed order, so results do not depend on the thread count.
using System.Runtime.CompilerServices;
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;

namespace GpuDinoRnn.Backends;

public sealed unsafe class CpuStackBackend : IBackend
{
    // Below this much recurrence work (multiply-adds) per step, one thread beats waking others.
    private const long ParallelWork = 100_000;
    // Below this many parameters, the update and the weight copies run on one thread.
    private const int ParallelParameters = 65_536;

    private readonly StackDims _d;
    private readonly int _h, _v, _hp, _vp, _ghp, _layers;
    private readonly int _hc;  // columns the products into H compute (CpuKernels.Columns); the rest of _hp stays 0
    private readonly CellKind _cell;
    private readonly DropoutConfig _dropout;
    private readonly CpuTeam _team;
    private int _members;                  // threads working on this batch
    private readonly int[] _names;         // (threads + 1) each member's names in the recurrences
    private int _layer;                    // the layer the running phase works on
    private DropoutSettings _drop;         // the running step's dropout
    private bool _carryIn, _withGradients;
    private readonly Action<int> _inputPhase, _forwardPhase, _outputPhase, _outputWeightPhase, _backwardPhase, _weightPhase, _inputGradientPhase;
    private readonly Action<int> _gatherPhase, _updatePhase, _refreshPhase;
    // The update and the copies between the flat and the padded layouts are split among
    // _copyMembers threads: the copies by blocks (a layer's gate, or the output layer), member m
    // taking blocks _copySplit[m] … _copySplit[m + 1] − 1 (about equal floats each), the update by
    // runs of the flat buffer. Each element has one owner, so the bits do not depend on the split.
    private readonly int _copyMembers;
    private readonly int[] _copySplit;
    private OptimizerSettings _update;

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
    private int[] _x = [], _y = [], _rowT = [], _rowB = [], _active = [], _start = [];
    private Batch _batch = null!;
    private int _rows;

    private float[] _carry;   // (names, StateSize)
    private int _carried;
    private readonly List<float> _losses = [];

    public CpuStackBackend(ModelShape shape, DropoutConfig dropout, int threads = 1)
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
        _hc = CpuKernels.Columns(_h);
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
        _team = new CpuTeam(threads);
        _names = new int[_team.Size + 1];
        _inputPhase = m => InputProjection(RowsOf(m), RowsOf(m + 1));
        _forwardPhase = m => ForwardSteps(_names[m], _names[m + 1]);
        _outputPhase = m => OutputLayer(RowsOf(m), RowsOf(m + 1));
        _outputWeightPhase = OutputWeightGradients;
        _backwardPhase = m => BackwardSteps(_names[m], _names[m + 1]);
        _weightPhase = WeightGradients;
        _inputGradientPhase = m => InputGradients(RowsOf(m), RowsOf(m + 1));
        _copyMembers = _p.Length >= ParallelParameters ? _team.Size : 1;
        _copySplit = SplitBlocks(_copyMembers);
        _gatherPhase = m => GatherGradients(_copySplit[m], _copySplit[m + 1]);
        _updatePhase = UpdateShare;
        _refreshPhase = m => RefreshCopies(_copySplit[m], _copySplit[m + 1]);
        RefreshCopies();
    }

    public string Device => $"cpu ({_team.Size} thread{(_team.Size == 1 ? "" : "s")})";
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
        fixed (float* g = _g)
            _lastSumSquares = CpuKernels.SumOfSquares(g, _g.Length);
        // As the device records it: a non-finite gradient reads as a NaN loss, and such a step is not applied.
        float recorded = _lastSumSquares <= float.MaxValue ? (float)loss : float.NaN;
        _update = s.ForUpdate(++_updates);
        if (float.IsFinite(recorded))
        {
            _team.Run(_updatePhase, _copyMembers);
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
        Prepare(batch, carryIn: false, withGradients: false, DropoutSettings.None);
        Forward();
        RunPhase(_outputPhase);
        return SumLoss();
    }

    public void Dispose() => _team.Dispose();

    private double ForwardAndBackward(Batch batch, bool carryIn, DropoutSettings drop)
    {
        if (carryIn)
            EnsureCarry(batch.B);
        Prepare(batch, carryIn, withGradients: true, drop);
        Forward();
        RunPhase(_outputPhase);
        Backward();
        return SumLoss() / batch.B;
    }

    private double SumLoss()
    {
        double total = 0;
        for (int r = 0; r < _rows; r++)
            total += _rowLoss[r];
        return total;
    }

    private void RunPhase(Action<int> phase)
    {
        _team.Run(phase, _members);
    }

    private int RowsOf(int member) => (int)((long)_rows * member / _members);

    /// <summary>Output rows m0 … m1 of a weight gradient with `total` rows for a member (runs of 4, as CpuBackend).</summary>
    private (int, int) OutputRowsOf(int member, int total) =>
        ((int)((long)total * member / _members) & ~3, member + 1 == _members ? total : (int)((long)total * (member + 1) / _members) & ~3);

    private float* Row(PinnedFloats buffer, int row, int width) => buffer.Ptr + (long)row * width;

    private Span<float> RowSpan(PinnedFloats buffer, int row, int width) => new(Row(buffer, row, width), width);

    /// <summary>Packs the batch's rows, makes room for them and splits the work; allocates only for a batch larger than any before.</summary>
    private void Prepare(Batch batch, bool carryIn, bool withGradients, DropoutSettings drop)
    {
        _batch = batch;
        _rows = batch.Chars;
        (_carryIn, _withGradients, _drop) = (carryIn, withGradients, drop);
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
            _rowT = new int[n];
            _rowB = new int[n];
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
                (_rowT[row], _rowB[row]) = (t, b);
            }
        }
        // Threads only when a step's recurrence work is worth waking them for.
        long work = (long)batch.B * _h * _ghp * _layers;
        _members = work >= ParallelWork ? Math.Min(_team.Size, batch.B) : 1;
        // Names in contiguous ranges of about equal characters (names are sorted longest first).
        _names[0] = 0;
        int name = 0, chars = 0;
        for (int m = 1; m < _members; m++)
        {
            long target = (long)_rows * m / _members;
            while (name < batch.B && chars < target)
                chars += batch.Lengths[name++];
            _names[m] = name;
        }
        _names[_members] = batch.B;
    }

    /// <summary>Every layer over all steps, bottom to top: its input projection, then its recurrence.</summary>
    private void Forward()
    {
        for (_layer = 0; _layer < _layers; _layer++)
        {
            RunPhase(_inputPhase);
            RunPhase(_forwardPhase);
        }
    }

    /// <summary>Rows r0 ≤ r &lt; r1 of the layer's input u (above layer 0: h below, dropped out) and px = Wax·u + b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void InputProjection(int r0, int r1)
    {
        int l = _layer, ghp = _ghp, n = r1 - r0;
        if (n <= 0)
            return;
        for (int r = r0; r < r1; r++)
        {
            _bias[l].Span.CopyTo(RowSpan(_px, r, ghp));
            if (l == 0 && _x[r] >= 0)
                CpuKernels.Add(Row(_px, r, ghp), Row(_waxT[0], _x[r], ghp), Row(_px, r, ghp), ghp);
        }
        if (l == 0)
            return;
        Dropout(_hs[l - 1], _u[l], l, r0, r1);
        CpuKernels.AddProduct(Row(_px, r0, ghp), ghp, Row(_u[l], r0, _hp), _hp, _waxT[l].Ptr, ghp, n, _h, ghp);
    }

    /// <summary>The layer's recurrence for names lo ≤ b &lt; hi, step by step: pa = Waa·h₋, then the cell.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ForwardSteps(int lo, int hi)
    {
        int l = _layer, hp = _hp, ghp = _ghp;
        bool lstm = _cell == CellKind.Lstm, gru = _cell == CellKind.Gru;
        for (int t = 0; t < _batch.T; t++)
        {
            int n = Math.Min(hi, _active[t]) - lo;
            if (n <= 0)
                break;
            int r0 = _start[t] + lo;
            // The state each row starts from: the name's previous row, or the initial state.
            if (t > 0)
            {
                new Span<float>(Row(_hs[l], _start[t - 1] + lo, hp), n * hp).CopyTo(new Span<float>(Row(_prevH[l], r0, hp), n * hp));
                if (lstm)
                    new Span<float>(Row(_cs[l], _start[t - 1] + lo, hp), n * hp).CopyTo(new Span<float>(Row(_prevC[l], r0, hp), n * hp));
            }
            else
            {
                for (int b = lo; b < lo + n; b++)
                {
                    var prevH = RowSpan(_prevH[l], r0 + b - lo, hp);
                    var prevC = lstm ? RowSpan(_prevC[l], r0 + b - lo, hp) : default;
                    prevH.Clear();
                    prevC.Clear();
                    if (!_carryIn)
                        continue;
                    var state = _carry.AsSpan(b * Shape.StateSize + l * _d.StatePerLayer, _d.StatePerLayer);
                    state[.._h].CopyTo(prevH);
                    if (lstm)
                        state[_h..].CopyTo(prevC);
                }
            }
            new Span<float>(Row(_pa, r0, ghp), n * ghp).Clear();
            CpuKernels.AddProduct(Row(_pa, r0, ghp), ghp, Row(_prevH[l], r0, hp), hp, _waaT[l].Ptr, ghp, n, _h, ghp);
            for (int r = r0; r < r0 + n; r++)
            {
                CpuCells.Forward<CpuCells.Fast>(_cell, _h, hp, RowSpan(_px, r, ghp), RowSpan(_pa, r, ghp), RowSpan(_prevH[l], r, hp),
                    lstm ? RowSpan(_prevC[l], r, hp) : default, RowSpan(_act[l], r, ghp), gru ? RowSpan(_an[l], r, hp) : default,
                    RowSpan(_hs[l], r, hp), lstm ? RowSpan(_cs[l], r, hp) : default);
            }
        }
    }

    /// <summary>Rows r0 ≤ r &lt; r1: dst = src ⊙ the dropout factors of input `input` (a copy without dropout).</summary>
    private void Dropout(PinnedFloats src, PinnedFloats dst, int input, int r0, int r1)
    {
        if (src != dst)
            new Span<float>(Row(src, r0, _hp), (r1 - r0) * _hp).CopyTo(new Span<float>(Row(dst, r0, _hp), (r1 - r0) * _hp));
        if (_drop.P <= 0f)
            return;
        for (int r = r0; r < r1; r++)
            CpuDropout.Apply(Row(dst, r, _hp), _h, _drop.RowKey(input, _rowT[r], _rowB[r]), _drop.P);
    }

    /// <summary>
    /// Rows r0 ≤ r &lt; r1: the top layer's output, dropped out; logits = Wya·top + by, softmax,
    /// cross-entropy and dy = (softmax − onehot)/B (as CpuBackend.OutputLayer); when training also
    /// the top layer's gradient Wyaᵀ·dy through the same dropout.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void OutputLayer(int r0, int r1)
    {
        int vp = _vp, hp = _hp, n = r1 - r0;
        if (n <= 0)
            return;
        Dropout(_hs[_layers - 1], _top, _layers, r0, r1);
        float gradScale = 1f / _batch.B;
        for (int r = r0; r < r1; r++)
            _byRow.Span.CopyTo(RowSpan(_dy, r, vp));
        CpuKernels.AddProduct(Row(_dy, r0, vp), vp, Row(_top, r0, hp), hp, _wyaT.Ptr, vp, n, _h, vp);
        CpuKernels.SoftmaxCrossEntropy(Row(_dy, r0, vp), vp, n, _v, _y.AsSpan(r0, n), _rowLoss.AsSpan(r0, n), gradScale, _withGradients,
            preciseExp: false);
        if (!_withGradients)
            return;
        new Span<float>(Row(_gh, r0, hp), n * hp).Clear();
        CpuKernels.AddProduct(Row(_gh, r0, hp), hp, Row(_dy, r0, vp), vp, _wya.Ptr, hp, n, _v, _hc);
        Dropout(_gh, _gh, _layers, r0, r1);
    }

    /// <summary>Backpropagation through time, top layer first, then every gradient into the flat buffer.</summary>
    private void Backward()
    {
        RunPhase(_outputWeightPhase);
        for (_layer = _layers - 1; _layer >= 0; _layer--)
        {
            if (_cell == CellKind.Lstm)
                new Span<float>(_gc.Ptr, _rows * _hp).Clear();
            RunPhase(_backwardPhase);
            RunPhase(_weightPhase);
            if (_layer > 0)
                RunPhase(_inputGradientPhase);
        }
        _team.Run(_gatherPhase, _copyMembers);
    }

    /// <summary>dWya = Σ dy·topᵀ split by output rows; dby = Σ dy split by columns.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void OutputWeightGradients(int member)
    {
        var (k0, k1) = OutputRowsOf(member, _v);
        if (k1 > k0)
        {
            new Span<float>(Row(_gWya, k0, _hp), (k1 - k0) * _hp).Clear();
            CpuKernels.AddTransposedProduct(_gWya.Ptr, _hp, k0, k1, _dy.Ptr, _vp, _top.Ptr, _hp, _rows, _hc);
        }
        var (c0, c1) = CpuKernels.VectorShare(member, _members, _vp);
        if (c1 == c0)
            return;
        new Span<float>(_gBy.Ptr + c0, c1 - c0).Clear();
        for (int r = 0; r < _rows; r++)
            CpuKernels.Add(_gBy.Ptr + c0, Row(_dy, r, _vp) + c0, _gBy.Ptr + c0, c1 - c0);
    }

    /// <summary>
    /// The layer's backward recurrence for names lo ≤ b &lt; hi, last step first: the cell's backward
    /// from dh (which holds the gradient from above plus, once step t+1 is done, the recurrent
    /// part), then dh₋ += Waaᵀ·dpa for the rows of step t − 1.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void BackwardSteps(int lo, int hi)
    {
        int l = _layer, hp = _hp, ghp = _ghp;
        bool lstm = _cell == CellKind.Lstm, gru = _cell == CellKind.Gru;
        for (int t = _batch.T - 1; t >= 0; t--)
        {
            int n = Math.Min(hi, _active[t]) - lo;
            if (n <= 0)
                continue;
            int r0 = _start[t] + lo;
            for (int b = lo; b < lo + n; b++)
            {
                int r = _start[t] + b, prev = t > 0 ? _start[t - 1] + b : -1;
                CpuCells.Backward<CpuCells.Fast>(_cell, _h, hp, RowSpan(_act[l], r, ghp), gru ? RowSpan(_an[l], r, hp) : default,
                    RowSpan(_prevH[l], r, hp), lstm ? RowSpan(_prevC[l], r, hp) : default, lstm ? RowSpan(_cs[l], r, hp) : default,
                    RowSpan(_gh, r, hp), lstm ? RowSpan(_gc, r, hp) : default, RowSpan(_dpx, r, ghp), RowSpan(_dpa, r, ghp),
                    prev >= 0 ? RowSpan(_gh, prev, hp) : default, prev >= 0 && lstm ? RowSpan(_gc, prev, hp) : default);
            }
            if (t > 0)
                CpuKernels.AddProduct(Row(_gh, _start[t - 1] + lo, hp), hp, Row(_dpa, r0, ghp), ghp, _waa[l].Ptr, hp, n, ghp, _hc);
        }
    }

    /// <summary>
    /// The layer's weight gradients summed over all rows: dWaaᵀ = Σ h₋ᵀ·dpa and (above layer 0)
    /// dWaxᵀ = Σ uᵀ·dpx split by output rows; db and layer 0's dWax (a scatter by input id) split by columns.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void WeightGradients(int member)
    {
        int l = _layer, hp = _hp, ghp = _ghp, rows = _rows;
        // Output rows 0 … H−1 are dWaaᵀ's, H … 2H−1 dWaxᵀ's (above layer 0).
        var (m0, m1) = OutputRowsOf(member, l == 0 ? _h : 2 * _h);
        int waa0 = Math.Min(m0, _h), waa1 = Math.Min(m1, _h);
        if (waa1 > waa0)
        {
            new Span<float>(Row(_gWaaT[l], waa0, ghp), (waa1 - waa0) * ghp).Clear();
            CpuKernels.AddTransposedProduct(_gWaaT[l].Ptr, ghp, waa0, waa1, _prevH[l].Ptr, hp, _dpa.Ptr, ghp, rows, ghp);
        }
        int wax0 = Math.Max(m0, _h) - _h, wax1 = Math.Max(m1, _h) - _h;
        if (l > 0 && wax1 > wax0)
        {
            new Span<float>(Row(_gWaxT[l], wax0, ghp), (wax1 - wax0) * ghp).Clear();
            CpuKernels.AddTransposedProduct(_gWaxT[l].Ptr, ghp, wax0, wax1, _u[l].Ptr, hp, _dpx.Ptr, ghp, rows, ghp);
        }
        var (c0, c1) = CpuKernels.VectorShare(member, _members, ghp);
        if (c1 == c0)
            return;
        new Span<float>(_gBias[l].Ptr + c0, c1 - c0).Clear();
        if (l == 0)
            for (int k = 0; k < _v; k++)
                new Span<float>(Row(_gWaxT[0], k, ghp) + c0, c1 - c0).Clear();
        for (int r = 0; r < rows; r++)
        {
            float* dpx = Row(_dpx, r, ghp) + c0;
            CpuKernels.Add(_gBias[l].Ptr + c0, dpx, _gBias[l].Ptr + c0, c1 - c0);
            if (l == 0 && _x[r] >= 0)
                CpuKernels.Add(Row(_gWaxT[0], _x[r], ghp) + c0, dpx, Row(_gWaxT[0], _x[r], ghp) + c0, c1 - c0);
        }
    }

    /// <summary>Rows r0 ≤ r &lt; r1 of the layer below's gradient: Waxᵀ·dpx, through the same dropout as its output.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void InputGradients(int r0, int r1)
    {
        int n = r1 - r0;
        if (n <= 0)
            return;
        new Span<float>(Row(_gh, r0, _hp), n * _hp).Clear();
        CpuKernels.AddProduct(Row(_gh, r0, _hp), _hp, Row(_dpx, r0, _ghp), _ghp, _wax[_layer].Ptr, _hp, n, _ghp, _hc);
        Dropout(_gh, _gh, _layer, r0, r1);
    }

    /// <summary>
    /// The copies' blocks: one per layer and gate, then the output layer's. Member m of `members`
    /// gets a run of whole blocks with about equal floats.
    /// </summary>
    private int[] SplitBlocks(int members)
    {
        int blocks = _layers * _d.Gates + 1;
        var floats = new long[blocks + 1];
        for (int k = 0; k < blocks; k++)
            floats[k + 1] = floats[k] + (k < blocks - 1 ? (long)_h * (_d.InputsOf(k / _d.Gates) + _h + 1) : (long)_v * (_h + 1));
        var split = new int[members + 1];
        for (int m = 1; m < members; m++)
        {
            long target = floats[blocks] * m / members;
            int k = split[m - 1];
            while (k < blocks && floats[k + 1] <= target)
                k++;
            split[m] = k;
        }
        split[members] = blocks;
        return split;
    }

    /// <summary>The optimizer on member m's run of the flat buffer (whole cache lines, the last member to the end).</summary>
    private void UpdateShare(int member)
    {
        int n = _p.Length;
        int e0 = (int)((long)n * member / _copyMembers) & ~15;
        int e1 = member + 1 == _copyMembers ? n : (int)((long)n * (member + 1) / _copyMembers) & ~15;
        CpuOptimizer.Update(_p.AsSpan(e0, e1 - e0), _g.AsSpan(e0, e1 - e0), _m1.AsSpan(e0, e1 - e0), _m2.AsSpan(e0, e1 - e0), _update, _lastSumSquares);
    }

    /// <summary>Blocks k0 … k1 − 1 of the padded gradients into the flat buffer.</summary>
    private void GatherGradients(int k0, int k1)
    {
        fixed (float* g = _g)
        {
            for (int k = k0; k < k1; k++)
            {
                if (k == _layers * _d.Gates)
                {
                    for (int o = 0; o < _v; o++)
                    {
                        new Span<float>(Row(_gWya, o, _hp), _h).CopyTo(_g.AsSpan(_d.WyaOffset + o * _h, _h));
                        _g[_d.ByOffset + o] = _gBy.Ptr[o];
                    }
                    continue;
                }
                int l = k / _d.Gates, gate = k % _d.Gates;
                int wax = _d.WaxOffset(l), waa = _d.WaaOffset(l), bias = _d.BOffset(l), inputs = _d.InputsOf(l);
                // Gate block (H × inputs) from its columns gate·Hp … of the padded transposes.
                int row = gate * _h, col = gate * _hp;
                CpuKernels.Transpose(_gWaxT[l].Ptr + col, _ghp, g + wax + row * inputs, inputs, inputs, _h);
                CpuKernels.Transpose(_gWaaT[l].Ptr + col, _ghp, g + waa + row * _h, _h, _h, _h);
                new Span<float>(_gBias[l].Ptr + col, _h).CopyTo(_g.AsSpan(bias + row, _h));
            }
        }
    }

    /// <summary>The padded copies of the flat weights, after an upload or an update.</summary>
    private void RefreshCopies() => _team.Run(_refreshPhase, _copyMembers);

    /// <summary>Blocks k0 … k1 − 1 of the padded copies from the flat weights.</summary>
    private void RefreshCopies(int k0, int k1)
    {
        fixed (float* p = _p)
        {
            for (int k = k0; k < k1; k++)
            {
                if (k == _layers * _d.Gates)
                {
                    for (int o = 0; o < _v; o++)
                        _p.AsSpan(_d.WyaOffset + o * _h, _h).CopyTo(RowSpan(_wya, o, _hp));
                    CpuKernels.Transpose(p + _d.WyaOffset, _h, _wyaT.Ptr, _vp, _v, _h);
                    _byRow.Span.Fill(float.NegativeInfinity);
                    _p.AsSpan(_d.ByOffset, _v).CopyTo(_byRow.Span);
                    continue;
                }
                int l = k / _d.Gates, gate = k % _d.Gates;
                int wax = _d.WaxOffset(l), waa = _d.WaaOffset(l), bias = _d.BOffset(l), inputs = _d.InputsOf(l);
                // Gate block (H × inputs) into columns gate·Hp … of the padded transposes, and its rows as they are.
                int row = gate * _h, col = gate * _hp;
                CpuKernels.Transpose(p + wax + row * inputs, inputs, _waxT[l].Ptr + col, _ghp, _h, inputs);
                CpuKernels.Transpose(p + waa + row * _h, _h, _waaT[l].Ptr + col, _ghp, _h, _h);
                for (int i = 0; i < _h; i++)
                {
                    _p.AsSpan(waa + (row + i) * _h, _h).CopyTo(RowSpan(_waa[l], col + i, _hp));
                    if (l > 0)
                        _p.AsSpan(wax + (row + i) * inputs, _h).CopyTo(RowSpan(_wax[l], col + i, _hp));
                }
                _p.AsSpan(bias + row, _h).CopyTo(new Span<float>(_bias[l].Ptr + col, _h));
            }
        }
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

    /// <summary>Room to carry the state of b names; names past the carried ones start from zeros.</summary>
    private void EnsureCarry(int b)
    {
        if (_carry.Length < b * Shape.StateSize)
            Array.Resize(ref _carry, b * Shape.StateSize);
        // A slot a smaller batch did not carry still holds an older state.
        if (b > _carried)
            _carry.AsSpan(_carried * Shape.StateSize, (b - _carried) * Shape.StateSize).Clear();
    }
}
