// One backend for every ILGPU accelerator (CUDA, OpenCL, the CPU emulator) for the course's model:
// buffers, RnnKernels loaded once, and the launch sequence of a training step. The optimizer
// state, the loss history and the step's tail (norm, recorded loss, fused update) are
// DeviceTrainingState's, shared with IlgpuStackBackend; nothing is read back per step, and the
// batch's ids go up without waiting for the device (BatchUploads), so the host queues the next
// step while the device runs this one.
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;
using ILGPU;
using ILGPU.Runtime;

namespace GpuDinoRnn.Backends;

public sealed class IlgpuBackend : IBackend
{
    private readonly Accelerator _acc;
    private readonly DeviceMemory _memory;
    private readonly BatchUploads _uploads; // each step's ids, copied without waiting for the device
    private readonly bool _ownsAccelerator;
    private readonly IDisposable? _ownedContext;
    private readonly Action<KernelConfig, RnnDims, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int> _forwardPass;
    private readonly Action<Index1D, RnnDims, ArrayView<float>, ArrayView<float>> _transposeWaa;
    private readonly Action<KernelConfig, RnnDims, ArrayView<float>, ArrayView<int>, ArrayView<float>, float, ArrayView<float>, ArrayView<float>> _outputLayer;
    private readonly Action<KernelConfig, RnnDims, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _backwardPass;
    private readonly int _groupSize;   // threads per name in the forward and backward passes
    private readonly int _outputGroupSize; // threads per row in the output layer (a logit each)
    private readonly bool _waaShared;  // Waa fits in a group's shared memory
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _waaT; // Waa transposed for the forward pass, when it does not fit
    private readonly Action<Index1D, RnnDims, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> _weightGradients;
    private readonly Action<Index1D, RnnDims, ArrayView<float>, ArrayView<float>> _carryState;

    private readonly DeviceTrainingState _state;                      // parameters, gradients, moments, loss history
    private MemoryBuffer1D<int, Stride1D.Dense>? _x, _y;               // (T, B) ids
    private MemoryBuffer1D<float, Stride1D.Dense>? _a, _dy, _dz, _loss;
    private int _rowCapacity;
    private int _launches;

    /// <param name="accelerator">The device; disposed with the backend when ownsAccelerator.</param>
    /// <param name="shape">The model's size.</param>
    /// <param name="ownsAccelerator">Dispose the accelerator with the backend.</param>
    /// <param name="ownedContext">The ILGPU context to dispose last, when the backend made it.</param>
    public IlgpuBackend(Accelerator accelerator, ModelShape shape, bool ownsAccelerator = true, IDisposable? ownedContext = null)
        : this(accelerator, shape, accelerator.MaxSharedMemoryPerGroup, ownsAccelerator, ownedContext)
    {
    }

    /// <param name="sharedMemoryLimit">Bytes of shared memory a group may use (tests pass less than the device has).</param>
    internal IlgpuBackend(Accelerator accelerator, ModelShape shape, long sharedMemoryLimit, bool ownsAccelerator = true, IDisposable? ownedContext = null)
    {
        _acc = accelerator;
        _memory = new DeviceMemory(accelerator);
        _uploads = new BatchUploads(accelerator);
        _ownsAccelerator = ownsAccelerator;
        _ownedContext = ownedContext;
        Shape = shape;
        _forwardPass = _acc.LoadStreamKernel<RnnDims, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int>(RnnKernels.ForwardPass);
        _transposeWaa = _acc.LoadAutoGroupedStreamKernel<Index1D, RnnDims, ArrayView<float>, ArrayView<float>>(RnnKernels.TransposeWaa);
        _outputLayer = _acc.LoadStreamKernel<RnnDims, ArrayView<float>, ArrayView<int>, ArrayView<float>, float, ArrayView<float>, ArrayView<float>>(LossKernels.OutputLayer);
        _backwardPass = _acc.LoadStreamKernel<RnnDims, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(RnnKernels.BackwardPass);
        _groupSize = GroupSize.For(shape.H, _acc.WarpSize, _acc.MaxNumThreadsPerGroup);
        _outputGroupSize = GroupSize.For(shape.V, _acc.WarpSize, _acc.MaxNumThreadsPerGroup);
        // Not on OpenCL: ILGPU 1.5.3 writes its barrier there as work_group_barrier(CLK_GLOBAL_MEM_FENCE),
        // which does not promise that the group sees Waa's copy in local memory.
        _waaShared = _acc.AcceleratorType != AcceleratorType.OpenCL && (long)shape.H * shape.H * sizeof(float) <= sharedMemoryLimit;
        _weightGradients = _acc.LoadAutoGroupedStreamKernel<Index1D, RnnDims, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(RnnKernels.WeightGradients);
        _carryState = _acc.LoadAutoGroupedStreamKernel<Index1D, RnnDims, ArrayView<float>, ArrayView<float>>(RnnKernels.CarryState);

        _state = new DeviceTrainingState(_acc, shape.ParameterCount, shape.H, Allocate<float>);
        _waaT = Allocate<float>(_waaShared ? 1 : (long)shape.H * shape.H);
    }

    public string Device => DeviceMemory.Name(_acc);

    public int LaunchesPerStep => _launches;

    /// <summary>Bytes of device memory allocated so far (buffers grow only for a longer batch).</summary>
    internal long DeviceBytes => _memory.Bytes;

    /// <summary>How many times a step's upload has waited for the device (for tests).</summary>
    internal int UploadWaits => _uploads.Waits;

    /// <summary>Threads per group of the passes and of the output layer, and where Waa is read (for tests).</summary>
    internal int PassGroupSize => _groupSize;
    internal int OutputGroupSize => _outputGroupSize;
    internal bool WaaShared => _waaShared;
    public ModelShape Shape { get; }

    public void Upload(Parameters parameters) => _state.Upload(parameters.Data);

    public void Download(Parameters parameters) => _state.Download(parameters.Data);

    public void ResetState() => _state.ResetCarry();

    public float LastGradientNorm() => _state.LastGradientNorm();

    public void DownloadGradients(Span<float> gradients) => _state.DownloadGradients(gradients);

    public BackendState SaveState() => _state.Save();

    public void LoadState(BackendState state) => _state.Load(state);

    public void Step(Batch batch, StepSettings s)
    {
        var d = Shape.Dims(batch.B, batch.T);
        _launches = 0;
        ForwardAndBackward(batch, d, s.CarryState);
        _state.FinishStep(d.Rows, _loss!.View, d.B, s, Launch);
        if (s.CarryState)
        {
            Launch(() => _carryState(d.B * d.H, d, _a!.View, _state.Carry));
            _state.Carried = d.B;
        }
    }

    public float[] TakeLosses() => _state.TakeLosses();

    public float Gradients(Batch batch, bool carryState, Span<float> gradients)
    {
        var d = Shape.Dims(batch.B, batch.T);
        ForwardAndBackward(batch, d, carryState);
        _state.DownloadGradients(gradients);
        var rowLoss = new float[d.Rows];
        _loss!.View.SubView(0, d.Rows).CopyToCPU(rowLoss);
        return (float)(rowLoss.Sum(v => (double)v) / d.B);
    }

    public double EvaluateSum(Batch batch)
    {
        var d = Shape.Dims(batch.B, batch.T);
        UploadBatch(batch, d);
        _a!.View.SubView(0, d.B * d.H).MemSetToZero();
        if (!_waaShared)
            _transposeWaa(d.H * d.H, d, _state.P, _waaT.View);
        _forwardPass(PassConfig(d), d, _state.P, _x!.View, _y!.View, _a.View, _waaT.View, _waaShared ? 1 : 0);
        _outputLayer(new KernelConfig(d.Rows, _outputGroupSize), d, _state.P, _y!.View, _a.View, 0f, _dy!.View, _loss!.View);
        var rowLoss = new float[d.Rows];
        _loss.View.SubView(0, d.Rows).CopyToCPU(rowLoss);
        return rowLoss.Sum(v => (double)v);
    }

    public void Dispose()
    {
        _uploads.Dispose();
        _state.Dispose();
        DeviceMemory.Release(_waaT, _x, _y, _a, _dy, _dz, _loss, _ownsAccelerator ? _acc : null, _ownedContext);
    }

    /// <summary>A group per name; Waa's H·H floats of shared memory when they fit.</summary>
    private KernelConfig PassConfig(RnnDims d) =>
        new(d.B, _groupSize, SharedMemoryConfig.RequestDynamic<float>(_waaShared ? d.H * d.H : 1));

    /// <summary>
    /// State reset, forward pass, output layer, backward pass, weight gradients: 5 launches whatever
    /// T and B, 6 when Waa does not fit in shared memory (its transposed copy for the forward pass).
    /// </summary>
    private void ForwardAndBackward(Batch batch, RnnDims d, bool carryState)
    {
        UploadBatch(batch, d);
        if (carryState)
            _state.EnsureCarry(d.B);
        var a0 = _a!.View.SubView(0, d.B * d.H);
        if (carryState)
            Launch(() => _state.Carry.SubView(0, d.B * d.H).CopyTo(a0));
        else
            Launch(() => a0.MemSetToZero());
        if (!_waaShared)
            Launch(() => _transposeWaa(d.H * d.H, d, _state.P, _waaT.View));
        Launch(() => _forwardPass(PassConfig(d), d, _state.P, _x!.View, _y!.View, _a.View, _waaT.View, _waaShared ? 1 : 0));
        Launch(() => _outputLayer(new KernelConfig(d.Rows, _outputGroupSize), d, _state.P, _y!.View, _a.View, 1f / d.B, _dy!.View, _loss!.View));
        Launch(() => _backwardPass(PassConfig(d), d, _state.P, _y!.View, _a.View, _dy!.View, _dz!.View, _waaShared ? 1 : 0));
        Launch(() => _weightGradients(d.ParameterCount, d, _x!.View, _a.View, _dy!.View, _dz!.View, _state.G));
    }

    private void UploadBatch(Batch batch, RnnDims d)
    {
        int rows = d.Rows;
        if (rows > _rowCapacity || _a is null)
        {
            int capacity = DeviceMemory.GrownRows(rows, _rowCapacity, Math.Max(2L * d.H, d.V)); // _a's 2·H or _dy's V a row
            _acc.DefaultStream.Synchronize(); // the queued steps are done with the buffers freed here
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
        _uploads.Upload(batch, _x!.View, _y!.View);
    }

    /// <summary>Device memory; running out of it is a UserError naming the size and what to make smaller.</summary>
    internal MemoryBuffer1D<T, Stride1D.Dense> Allocate<T>(long length)
        where T : unmanaged => _memory.Allocate<T>(length, "--hidden or --batch");

    private void Launch(Action launch)
    {
        launch();
        _launches++;
    }
}
