// What both ILGPU backends keep on the device besides their model's own buffers — parameters,
// gradients, optimizer moments, the gradient norm's partial sums, the history of step losses and
// the carried states — and the tail every training step ends with: the norm, the recorded loss,
// the fused update.
// Nothing is read back per step: TakeLosses reads the history in one copy.
using GpuDinoRnn.Kernels;
using ILGPU;
using ILGPU.Runtime;

namespace GpuDinoRnn.Backends;

internal sealed class DeviceTrainingState : IDisposable
{
    /// <summary>Steps whose losses the device keeps before the host must read them.</summary>
    private const int HistoryCapacity = 1024;

    private readonly Action<Index1D, int, ArrayView<float>, ArrayView<float>> _normPartials;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, OptimizerSettings> _update;
    private readonly Action<Index1D, int, ArrayView<float>, float, ArrayView<float>, ArrayView<float>, int> _batchLoss;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _p, _g, _m, _v; // parameters, gradients, optimizer moments
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _partial;       // norm partial sums
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _history;       // per-step losses
    private readonly int _count, _stateSize;
    private readonly Func<long, MemoryBuffer1D<float, Stride1D.Dense>> _allocate;
    private readonly AcceleratorStream _stream;
    private MemoryBuffer1D<float, Stride1D.Dense> _carry; // (names, state size) carried states
    private int _pending;
    private readonly List<float> _drained = [];

    /// <param name="stateSize">Floats of carried state per name.</param>
    /// <param name="allocate">The backend's allocator (device memory errors name what to make smaller).</param>
    public DeviceTrainingState(Accelerator acc, int parameterCount, int stateSize, Func<long, MemoryBuffer1D<float, Stride1D.Dense>> allocate)
    {
        _count = parameterCount;
        _stateSize = stateSize;
        _allocate = allocate;
        _stream = acc.DefaultStream;
        _normPartials = acc.LoadAutoGroupedStreamKernel<Index1D, int, ArrayView<float>, ArrayView<float>>(UpdateKernels.SquaredNormPartials);
        _update = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, OptimizerSettings>(UpdateKernels.Update);
        _batchLoss = acc.LoadAutoGroupedStreamKernel<Index1D, int, ArrayView<float>, float, ArrayView<float>, ArrayView<float>, int>(LossKernels.BatchLoss);
        _p = allocate(parameterCount);
        _g = allocate(parameterCount);
        _m = allocate(parameterCount);
        _v = allocate(parameterCount);
        // GPU memory comes uninitialised: what can be read before the first step starts at zero.
        _g.MemSetToZero();
        _m.MemSetToZero();
        _v.MemSetToZero();
        _partial = allocate(UpdateKernels.NormPartials);
        _partial.MemSetToZero();
        _history = allocate(HistoryCapacity);
        _carry = allocate(stateSize);
        _carry.MemSetToZero();
    }

    public ArrayView<float> P => _p.View;
    public ArrayView<float> G => _g.View;

    /// <summary>Updates applied so far (Adam's t).</summary>
    public long Updates { get; set; }

    public void Upload(float[] parameters) => _p.View.CopyFromCPU(parameters);

    public void Download(float[] parameters) => _p.View.CopyToCPU(parameters);

    public void DownloadGradients(Span<float> gradients) => ((ArrayView<float>)_g.View).CopyToCPU(gradients);

    public float LastGradientNorm() => MathF.Sqrt(_partial.GetAsArray1D().Sum());

    /// <summary>The carried states; the first Carried names' are valid.</summary>
    public ArrayView1D<float, Stride1D.Dense> Carry => _carry.View;

    /// <summary>Names whose final state the last carrying step kept.</summary>
    public int Carried { get; set; }

    /// <summary>Forget the carried states (zeros).</summary>
    public void ResetCarry()
    {
        _carry.MemSetToZero();
        Carried = 0;
    }

    /// <summary>Room to carry the states of b names; names past the carried ones start from zeros.</summary>
    public void EnsureCarry(int b)
    {
        if (_carry.Length < (long)b * _stateSize)
        {
            // A fault of an earlier step shows here, not as the allocation's (taken for running out of memory).
            _stream.Synchronize();
            var grown = _allocate((long)b * _stateSize);
            grown.MemSetToZero();
            _carry.View.CopyTo(grown.View.SubView(0, _carry.Length));
            _stream.Synchronize(); // the copy, queued, still reads the buffer freed here
            _carry.Dispose();
            _carry = grown;
        }
        // A slot a smaller batch did not carry still holds an older state.
        if (b > Carried)
            _carry.View.SubView((long)Carried * _stateSize, (long)(b - Carried) * _stateSize).MemSetToZero();
    }

    /// <summary>Moments, update count and carried states, for a checkpoint.</summary>
    public BackendState Save()
    {
        var carry = new float[Carried * _stateSize];
        if (carry.Length > 0)
            _carry.View.SubView(0, carry.Length).CopyToCPU(carry);
        return new(Updates, _m.GetAsArray1D(), _v.GetAsArray1D(), carry);
    }

    public void Load(BackendState state)
    {
        Updates = state.Updates;
        _m.View.CopyFromCPU(state.M);
        _v.View.CopyFromCPU(state.V);
        Carried = state.Carry.Length / _stateSize;
        EnsureCarry(Carried);
        _carry.MemSetToZero();
        if (state.Carry.Length > 0)
            _carry.View.SubView(0, state.Carry.Length).CopyFromCPU(state.Carry);
    }

    /// <summary>
    /// The end of a step: the norm's partial sums (for norm clipping, the NaN guard and the logged
    /// norm), the step's loss recorded before the update it guards, and the fused clip + update.
    /// </summary>
    /// <param name="loss">The step's loss per row.</param>
    /// <param name="launch">Runs and counts a launch.</param>
    public void FinishStep(int rows, ArrayView<float> loss, int names, StepSettings s, Action<Action> launch)
    {
        launch(() => _normPartials(UpdateKernels.NormPartials, _count, _g.View, _partial.View));
        launch(() => _batchLoss(1, rows, loss, names, _partial.View, _history.View, _pending));
        var update = s.ForUpdate(++Updates);
        launch(() => _update(_count, _p.View, _g.View, _m.View, _v.View, _partial.View, _history.View, _pending, update));
        if (++_pending == HistoryCapacity)
            Drain();
    }

    public float[] TakeLosses()
    {
        Drain();
        var result = _drained.ToArray();
        _drained.Clear();
        return result;
    }

    public void Dispose()
    {
        DeviceMemory.Release(_p, _g, _m, _v, _partial, _history, _carry);
    }

    private void Drain()
    {
        if (_pending == 0)
            return;
        var losses = new float[_pending];
        _history.View.SubView(0, _pending).CopyToCPU(losses);
        _drained.AddRange(losses);
        _pending = 0;
    }
}
