// One backend for every ILGPU accelerator (CUDA, OpenCL, the CPU emulator): buffers, kernels
// loaded once, and the launch sequence of a training step. Nothing is read back per step: each
// step's loss goes to a device-side history that TakeLosses reads in one copy.
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;
using ILGPU;
using ILGPU.Runtime;

namespace GpuDinoRnn.Backends;

public sealed class IlgpuBackend : IBackend
{
    /// <summary>Steps whose losses the device keeps before the host must read them.</summary>
    private const int HistoryCapacity = 1024;

    private readonly Accelerator _acc;
    private readonly DeviceMemory _memory;
    private readonly bool _ownsAccelerator;
    private readonly IDisposable? _ownedContext;
    private readonly Action<KernelConfig, RnnDims, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, int> _forwardPass;
    private readonly Action<Index1D, RnnDims, ArrayView<float>, ArrayView<int>, ArrayView<float>, float, ArrayView<float>, ArrayView<float>> _outputLayer;
    private readonly Action<KernelConfig, RnnDims, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _backwardPass;
    private readonly int _groupSize;   // threads per name in the forward and backward passes
    private readonly bool _waaShared;  // Waa fits in a group's shared memory
    private readonly Action<Index1D, RnnDims, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> _weightGradients;
    private readonly Action<Index1D, RnnDims, ArrayView<float>, ArrayView<float>> _carryState;
    private readonly Action<Index1D, int, ArrayView<float>, ArrayView<float>> _normPartials;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, OptimizerSettings> _update;
    private readonly Action<Index1D, int, ArrayView<float>, float, ArrayView<float>, ArrayView<float>, int> _batchLoss;

    private readonly MemoryBuffer1D<float, Stride1D.Dense> _p;        // parameters
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _g;        // gradients
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _m, _v;    // optimizer moments
    private long _updates;                                            // updates applied (Adam's t)
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _partial;  // norm partial sums
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _history;  // per-step losses
    private MemoryBuffer1D<float, Stride1D.Dense> _carry;             // (B, H) carried state
    private int _carried;                                             // names (streams) whose state _carry holds
    private MemoryBuffer1D<int, Stride1D.Dense>? _x, _y;               // (T, B) ids
    private MemoryBuffer1D<float, Stride1D.Dense>? _a, _dy, _dz, _loss;
    private int _rowCapacity;
    private int _pending;
    private readonly List<float> _drained = [];
    private int _launches;

    /// <param name="accelerator">The device; disposed with the backend when ownsAccelerator.</param>
    /// <param name="shape">The model's size.</param>
    /// <param name="ownsAccelerator">Dispose the accelerator with the backend.</param>
    /// <param name="ownedContext">The ILGPU context to dispose last, when the backend made it.</param>
    public IlgpuBackend(Accelerator accelerator, ModelShape shape, bool ownsAccelerator = true, IDisposable? ownedContext = null)
    {
        _acc = accelerator;
        _memory = new DeviceMemory(accelerator);
        _ownsAccelerator = ownsAccelerator;
        _ownedContext = ownedContext;
        Shape = shape;
        _forwardPass = _acc.LoadStreamKernel<RnnDims, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, int>(RnnKernels.ForwardPass);
        _outputLayer = _acc.LoadAutoGroupedStreamKernel<Index1D, RnnDims, ArrayView<float>, ArrayView<int>, ArrayView<float>, float, ArrayView<float>, ArrayView<float>>(LossKernels.OutputLayer);
        _backwardPass = _acc.LoadStreamKernel<RnnDims, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(RnnKernels.BackwardPass);
        int warp = Math.Max(1, _acc.WarpSize);
        _groupSize = Math.Min((shape.H + warp - 1) / warp * warp, _acc.MaxNumThreadsPerGroup);
        _waaShared = (long)shape.H * shape.H * sizeof(float) <= _acc.MaxSharedMemoryPerGroup;
        _weightGradients = _acc.LoadAutoGroupedStreamKernel<Index1D, RnnDims, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(RnnKernels.WeightGradients);
        _carryState = _acc.LoadAutoGroupedStreamKernel<Index1D, RnnDims, ArrayView<float>, ArrayView<float>>(RnnKernels.CarryState);
        _normPartials = _acc.LoadAutoGroupedStreamKernel<Index1D, int, ArrayView<float>, ArrayView<float>>(UpdateKernels.SquaredNormPartials);
        _update = _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, OptimizerSettings>(UpdateKernels.Update);
        _batchLoss = _acc.LoadAutoGroupedStreamKernel<Index1D, int, ArrayView<float>, float, ArrayView<float>, ArrayView<float>, int>(LossKernels.BatchLoss);

        _p = Allocate<float>(shape.ParameterCount);
        _g = Allocate<float>(shape.ParameterCount);
        _m = Allocate<float>(shape.ParameterCount);
        _v = Allocate<float>(shape.ParameterCount);
        _m.MemSetToZero();
        _v.MemSetToZero();
        _partial = Allocate<float>(UpdateKernels.NormPartials);
        _history = Allocate<float>(HistoryCapacity);
        _carry = Allocate<float>(shape.H);
        _carry.MemSetToZero();
    }

    public string Device => DeviceMemory.Name(_acc);

    public int LaunchesPerStep => _launches;

    /// <summary>Bytes of device memory allocated so far (buffers grow only for a longer batch).</summary>
    internal long DeviceBytes => _memory.Bytes;
    public ModelShape Shape { get; }

    public void Upload(Parameters parameters) => _p.View.CopyFromCPU(parameters.Data);

    public void Download(Parameters parameters)
    {
        _p.View.CopyToCPU(parameters.Data);
    }

    public void ResetState()
    {
        _carry.MemSetToZero();
        _carried = 0;
    }

    public float LastGradientNorm()
    {
        var partial = _partial.GetAsArray1D();
        return MathF.Sqrt(partial.Sum());
    }

    public void DownloadGradients(Span<float> gradients) => ((ArrayView<float>)_g.View).CopyToCPU(gradients);

    public BackendState SaveState()
    {
        var carry = new float[_carried * Shape.H];
        if (carry.Length > 0)
            ((ArrayView<float>)_carry.View).SubView(0, carry.Length).CopyToCPU(carry);
        return new(_updates, _m.GetAsArray1D(), _v.GetAsArray1D(), carry);
    }

    public void LoadState(BackendState state)
    {
        _updates = state.Updates;
        _m.View.CopyFromCPU(state.M);
        _v.View.CopyFromCPU(state.V);
        _carried = state.Carry.Length / Shape.H;
        EnsureCarry(_carried);
        _carry.MemSetToZero();
        if (state.Carry.Length > 0)
            ((ArrayView<float>)_carry.View).SubView(0, state.Carry.Length).CopyFromCPU(state.Carry);
    }

    public void Step(Batch batch, StepSettings s)
    {
        var d = Shape.Dims(batch.B, batch.T);
        _launches = 0;
        ForwardAndBackward(batch, d, s.CarryState);
        // The norm's partial sums serve norm clipping, the NaN guard and the logged gradient norm.
        // The loss is recorded before the update, which it guards.
        Launch(() => _normPartials(UpdateKernels.NormPartials, d.ParameterCount, _g.View, _partial.View));
        Launch(() => _batchLoss(1, d.Rows, _loss!.View, d.B, _partial.View, _history.View, _pending));
        var update = s.ForUpdate(++_updates);
        Launch(() => _update(d.ParameterCount, _p.View, _g.View, _m.View, _v.View, _partial.View, _history.View, _pending, update));
        if (s.CarryState)
        {
            Launch(() => _carryState(d.B * d.H, d, _a!.View, _carry.View));
            _carried = d.B;
        }
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

    public float Gradients(Batch batch, bool carryState, Span<float> gradients)
    {
        var d = Shape.Dims(batch.B, batch.T);
        ForwardAndBackward(batch, d, carryState);
        ((ArrayView<float>)_g.View).CopyToCPU(gradients);
        var rowLoss = new float[d.Rows];
        _loss!.View.SubView(0, d.Rows).CopyToCPU(rowLoss);
        return (float)(rowLoss.Sum(v => (double)v) / d.B);
    }

    public double EvaluateSum(Batch batch)
    {
        var d = Shape.Dims(batch.B, batch.T);
        UploadBatch(batch, d);
        _a!.View.SubView(0, d.B * d.H).MemSetToZero();
        _forwardPass(PassConfig(d), d, _p.View, _x!.View, _y!.View, _a.View, _waaShared ? 1 : 0);
        _outputLayer(d.Rows, d, _p.View, _y!.View, _a.View, 0f, _dy!.View, _loss!.View);
        var rowLoss = new float[d.Rows];
        _loss.View.SubView(0, d.Rows).CopyToCPU(rowLoss);
        return rowLoss.Sum(v => (double)v);
    }

    public void Dispose()
    {
        foreach (var buffer in new MemoryBuffer?[] { _p, _g, _m, _v, _partial, _history, _carry, _x, _y, _a, _dy, _dz, _loss })
            buffer?.Dispose();
        if (_ownsAccelerator)
            _acc.Dispose();
        _ownedContext?.Dispose();
    }

    /// <summary>A group per name; Waa's H·H floats of shared memory when they fit.</summary>
    private KernelConfig PassConfig(RnnDims d) =>
        new(d.B, _groupSize, SharedMemoryConfig.RequestDynamic<float>(_waaShared ? d.H * d.H : 1));

    /// <summary>State reset, forward pass, output layer, backward pass, weight gradients: 5 launches whatever T and B.</summary>
    private void ForwardAndBackward(Batch batch, RnnDims d, bool carryState)
    {
        UploadBatch(batch, d);
        if (carryState)
            EnsureCarry(d.B);
        var a0 = _a!.View.SubView(0, d.B * d.H);
        if (carryState)
            Launch(() => _carry.View.SubView(0, d.B * d.H).CopyTo(a0));
        else
            Launch(() => a0.MemSetToZero());
        Launch(() => _forwardPass(PassConfig(d), d, _p.View, _x!.View, _y!.View, _a.View, _waaShared ? 1 : 0));
        Launch(() => _outputLayer(d.Rows, d, _p.View, _y!.View, _a.View, 1f / d.B, _dy!.View, _loss!.View));
        Launch(() => _backwardPass(PassConfig(d), d, _p.View, _y!.View, _a.View, _dy!.View, _dz!.View, _waaShared ? 1 : 0));
        Launch(() => _weightGradients(d.ParameterCount, d, _x!.View, _a.View, _dy!.View, _dz!.View, _g.View));
    }

    /// <summary>Room to carry the state of b names (new ones start from zeros).</summary>
    private void EnsureCarry(int b)
    {
        if (_carry.Length >= (long)b * Shape.H)
            return;
        var grown = Allocate<float>((long)b * Shape.H);
        grown.MemSetToZero();
        _carry.View.CopyTo(grown.View.SubView(0, _carry.Length));
        _carry.Dispose();
        _carry = grown;
    }

    private void UploadBatch(Batch batch, RnnDims d)
    {
        int rows = d.Rows;
        if (rows > _rowCapacity || _a is null)
        {
            int capacity = Math.Max(rows, 2 * _rowCapacity);
            foreach (var buffer in new MemoryBuffer?[] { _x, _y, _a, _dy, _dz, _loss })
                buffer?.Dispose();
            _x = Allocate<int>(capacity);
            _y = Allocate<int>(capacity);
            // (T+1)·B·H ≤ (rows + B)·H ≤ 2·rows·H.
            _a = Allocate<float>(2L * capacity * d.H);
            _dy = Allocate<float>((long)capacity * d.V);
            _dz = Allocate<float>((long)capacity * d.H);
            _loss = Allocate<float>(capacity);
            _rowCapacity = capacity;
        }
        _x!.View.SubView(0, rows).CopyFromCPU(batch.X);
        _y!.View.SubView(0, rows).CopyFromCPU(batch.Y);
    }

    /// <summary>Device memory; running out of it is a UserError naming the size and what to make smaller.</summary>
    internal MemoryBuffer1D<T, Stride1D.Dense> Allocate<T>(long length)
        where T : unmanaged => _memory.Allocate<T>(length, "--hidden or --batch");

    private void Drain()
    {
        if (_pending == 0)
            return;
        var losses = new float[_pending];
        _history.View.SubView(0, _pending).CopyToCPU(losses);
        _drained.AddRange(losses);
        _pending = 0;
    }

    private void Launch(Action launch)
    {
        launch();
        _launches++;
    }
}
