// The laptop fallback: the same training step as the ILGPU kernels, in managed code with SIMD
// (System.Numerics.Tensors) and several threads. Method names mirror the kernels
// (ForwardStep, OutputLayer, BackwardStep, WeightGradients, ClipAndUpdate). Padded rows are
// skipped: names are sorted longest first, so only the prefix Active(t) of a step is worked on.
// Every output element is summed by one thread in a fixed order, so results do not depend on
// the thread count.
using System.Numerics.Tensors;
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;

namespace GpuDinoRnn.Backends;

public sealed class CpuBackend : IBackend
{
    private readonly int _threads;
    private readonly float[] _p;       // parameters, flat layout of RnnDims
    private readonly float[] _g;       // gradients, same layout
    private readonly float[] _m, _v;   // optimizer moments, same layout
    private long _updates;             // updates applied (Adam's t)
    private float _lastSumSquares;     // Σ g² of the last step
    private float[] _a = [];           // ((T+1), B, H) hidden states; slot 0 is the initial state
    private float[] _dy = [];          // (T, B, V) gradient with respect to the logits
    private float[] _dz = [];          // (T, B, H) gradient with respect to the pre-activation
    private float[] _loss = [];        // (T, B) loss per row
    private readonly float[] _carry;   // (H) final state of the last step, for CarryState (batch 1)
    private readonly List<float> _losses = [];

    public CpuBackend(ModelShape shape, int threads)
    {
        Shape = shape;
        _threads = Math.Max(1, threads);
        _p = new float[shape.ParameterCount];
        _g = new float[shape.ParameterCount];
        _m = new float[shape.ParameterCount];
        _v = new float[shape.ParameterCount];
        _carry = new float[shape.H];
    }

    public string Device => $"cpu ({_threads} thread{(_threads == 1 ? "" : "s")})";
    public int LaunchesPerStep => 0;
    public ModelShape Shape { get; }

    public void Upload(Parameters parameters) => parameters.Data.CopyTo(_p, 0);

    public void Download(Parameters parameters) => _p.CopyTo(parameters.Data, 0);

    public void ResetState() => Array.Clear(_carry);

    public void Step(Batch batch, StepSettings s)
    {
        var d = Shape.Dims(batch.B, batch.T);
        if (s.CarryState && batch.B != 1)
            throw new UserError("a carried hidden state needs --batch 1");
        double loss = ForwardAndBackward(batch, d, s.CarryState);
        _lastSumSquares = TensorPrimitives.SumOfSquares(_g);
        CpuOptimizer.Update(_p, _g, _m, _v, s.ForUpdate(++_updates), _lastSumSquares);
        _losses.Add((float)loss);
        if (s.CarryState)
            Array.Copy(_a, d.T * d.B * d.H, _carry, 0, d.H);
    }

    public float[] TakeLosses()
    {
        var result = _losses.ToArray();
        _losses.Clear();
        return result;
    }

    public float Gradients(Batch batch, bool carryState, Span<float> gradients)
    {
        var d = Shape.Dims(batch.B, batch.T);
        float loss = (float)ForwardAndBackward(batch, d, carryState);
        _g.CopyTo(gradients);
        return loss;
    }

    public double EvaluateSum(Batch batch)
    {
        var d = Shape.Dims(batch.B, batch.T);
        Prepare(d);
        Array.Clear(_a, 0, d.B * d.H);
        for (int t = 0; t < d.T; t++)
            ForwardStep(batch, d, t);
        return OutputLayer(batch, d, gradScale: 0f) * batch.B;
    }

    public float LastGradientNorm() => MathF.Sqrt(_lastSumSquares);

    public void DownloadGradients(Span<float> gradients) => _g.CopyTo(gradients);

    public BackendState SaveState() => new(_updates, _m.ToArray(), _v.ToArray(), _carry[..Shape.H]);

    public void LoadState(BackendState state)
    {
        _updates = state.Updates;
        state.M.CopyTo(_m, 0);
        state.V.CopyTo(_v, 0);
        state.Carry.CopyTo(_carry, 0);
    }

    public void Dispose()
    {
    }

    /// <summary>Everything up to the gradients; returns the mean loss per name.</summary>
    private double ForwardAndBackward(Batch batch, RnnDims d, bool carryState)
    {
        Prepare(d);
        if (carryState)
            Array.Copy(_carry, _a, d.H * d.B);
        else
            Array.Clear(_a, 0, d.B * d.H);
        for (int t = 0; t < d.T; t++)
            ForwardStep(batch, d, t);
        double loss = OutputLayer(batch, d, 1f / d.B);
        for (int t = d.T - 1; t >= 0; t--)
            BackwardStep(batch, d, t);
        WeightGradients(batch, d);
        return loss;
    }

    private void Prepare(RnnDims d)
    {
        int rows = d.Rows;
        if (_a.Length < (rows + d.B) * d.H)
        {
            _a = new float[(rows + d.B) * d.H];
            _dz = new float[rows * d.H];
            _dy = new float[rows * d.V];
            _loss = new float[rows];
        }
    }

    /// <summary>a_{t+1} = tanh(Wax·x_t + Waa·a_t + b); finished names copy their state forward.</summary>
    private void ForwardStep(Batch batch, RnnDims d, int t)
    {
        int active = batch.Active(t);
        var p = _p;
        var a = _a;
        Parallel(active, d.H * d.H, (lo, hi) =>
        {
            for (int b = lo; b < hi; b++)
            {
                int r = t * d.B + b;
                var prev = a.AsSpan(r * d.H, d.H);
                var next = a.AsSpan((r + d.B) * d.H, d.H);
                int x = batch.X[r];
                for (int i = 0; i < d.H; i++)
                {
                    float z = p[d.BOffset + i] + TensorPrimitives.Dot(p.AsSpan(d.WaaOffset + i * d.H, d.H), prev);
                    next[i] = x >= 0 ? z + p[d.WaxOffset + i * d.V + x] : z;
                }
                TensorPrimitives.Tanh(next, next);
            }
        });
        for (int b = active; b < d.B; b++)
            Array.Copy(a, (t * d.B + b) * d.H, a, ((t + 1) * d.B + b) * d.H, d.H);
    }

    /// <summary>Softmax + cross-entropy + dy for every real row; returns the mean loss per name.</summary>
    private double OutputLayer(Batch batch, RnnDims d, float gradScale)
    {
        var p = _p;
        Parallel(d.Rows, d.V * d.H, (lo, hi) =>
        {
            for (int r = lo; r < hi; r++)
            {
                int target = batch.Y[r];
                var dy = _dy.AsSpan(r * d.V, d.V);
                if (target < 0)
                {
                    dy.Clear();
                    _loss[r] = 0f;
                    continue;
                }
                var ar = _a.AsSpan((r + d.B) * d.H, d.H);
                for (int k = 0; k < d.V; k++)
                    dy[k] = p[d.ByOffset + k] + TensorPrimitives.Dot(p.AsSpan(d.WyaOffset + k * d.H, d.H), ar);
                float max = TensorPrimitives.Max(dy);
                float zTarget = dy[target];
                TensorPrimitives.Subtract(dy, max, dy);
                TensorPrimitives.Exp(dy, dy);
                float sum = TensorPrimitives.Sum(dy);
                _loss[r] = MathF.Log(sum) - (zTarget - max);
                TensorPrimitives.Multiply(dy, gradScale / sum, dy);
                dy[target] -= gradScale;
            }
        });
        double total = 0;
        for (int r = 0; r < d.Rows; r++)
            total += _loss[r];
        return total / d.B;
    }

    /// <summary>dz_t = (Wyaᵀ·dy_t + Waaᵀ·dz_{t+1}) ⊙ (1 − a_{t+1}²) for the names running at t.</summary>
    private void BackwardStep(Batch batch, RnnDims d, int t)
    {
        int active = batch.Active(t);
        int activeNext = t + 1 < d.T ? batch.Active(t + 1) : 0;
        var p = _p;
        Parallel(active, d.H * (d.H + d.V), (lo, hi) =>
        {
            for (int b = lo; b < hi; b++)
            {
                int r = t * d.B + b;
                var dz = _dz.AsSpan(r * d.H, d.H);
                dz.Clear();
                var dy = _dy.AsSpan(r * d.V, d.V);
                for (int k = 0; k < d.V; k++)
                    TensorPrimitives.MultiplyAdd(p.AsSpan(d.WyaOffset + k * d.H, d.H), dy[k], dz, dz);
                if (b < activeNext)
                {
                    var dzNext = _dz.AsSpan((r + d.B) * d.H, d.H);
                    for (int j = 0; j < d.H; j++)
                        TensorPrimitives.MultiplyAdd(p.AsSpan(d.WaaOffset + j * d.H, d.H), dzNext[j], dz, dz);
                }
                var an = _a.AsSpan((r + d.B) * d.H, d.H);
                for (int i = 0; i < d.H; i++)
                    dz[i] *= 1f - an[i] * an[i];
            }
        });
        for (int b = active; b < d.B; b++)
            _dz.AsSpan((t * d.B + b) * d.H, d.H).Clear();
    }

    /// <summary>
    /// dWax, dWaa, db by hidden row i and dWya, dby by output row k: each row owned by one
    /// thread and summed over the real rows in time order.
    /// </summary>
    private void WeightGradients(Batch batch, RnnDims d)
    {
        Array.Clear(_g);
        var g = _g;
        int work = batch.Chars * (d.H + d.V);
        Parallel(d.H, work, (lo, hi) =>
        {
            for (int t = 0; t < d.T; t++)
            {
                int active = batch.Active(t);
                for (int b = 0; b < active; b++)
                {
                    int r = t * d.B + b;
                    var dz = _dz.AsSpan(r * d.H, d.H);
                    var prev = _a.AsSpan(r * d.H, d.H);
                    int x = batch.X[r];
                    for (int i = lo; i < hi; i++)
                    {
                        float dzi = dz[i];
                        if (x >= 0)
                            g[d.WaxOffset + i * d.V + x] += dzi;
                        TensorPrimitives.MultiplyAdd(prev, dzi, g.AsSpan(d.WaaOffset + i * d.H, d.H), g.AsSpan(d.WaaOffset + i * d.H, d.H));
                        g[d.BOffset + i] += dzi;
                    }
                }
            }
        });
        Parallel(d.V, work, (lo, hi) =>
        {
            for (int t = 0; t < d.T; t++)
            {
                int active = batch.Active(t);
                for (int b = 0; b < active; b++)
                {
                    int r = t * d.B + b;
                    var dy = _dy.AsSpan(r * d.V, d.V);
                    var an = _a.AsSpan((r + d.B) * d.H, d.H);
                    for (int k = lo; k < hi; k++)
                    {
                        var row = g.AsSpan(d.WyaOffset + k * d.H, d.H);
                        TensorPrimitives.MultiplyAdd(an, dy[k], row, row);
                        g[d.ByOffset + k] += dy[k];
                    }
                }
            }
        });
    }

    /// <summary>Runs body over [0, n) in at most _threads contiguous chunks, or inline when the work is small.</summary>
    private void Parallel(int n, int workPerItem, Action<int, int> body)
    {
        int chunks = Math.Min(_threads, n);
        if (chunks <= 1 || (long)n * workPerItem < 20_000)
        {
            body(0, n);
            return;
        }
        System.Threading.Tasks.Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = chunks }, c =>
            body((int)((long)n * c / chunks), (int)((long)n * (c + 1) / chunks)));
    }
}
