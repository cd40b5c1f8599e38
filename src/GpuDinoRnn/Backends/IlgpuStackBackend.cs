// The ILGPU backend of every model beyond the course's one vanilla layer (gru, lstm, stacked
// layers, dropout): buffers per layer, StackKernels loaded once, and the launch sequence of a
// training step. As in IlgpuBackend, nothing is read back per step: each step's loss goes to a
// device-side history that TakeLosses reads in one copy, and the ids go up through BatchUploads.
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;
using ILGPU;
using ILGPU.Runtime;

namespace GpuDinoRnn.Backends;

public sealed class IlgpuStackBackend : IBackend
{
    private readonly Accelerator _acc;
    private readonly DeviceMemory _memory;
    private readonly BatchUploads _uploads; // each step's ids, copied without waiting for the device
    private readonly bool _ownsAccelerator;
    private readonly IDisposable? _ownedContext;
    private readonly DropoutConfig _dropout;
    private readonly int _groupSize; // threads per name in the forward and backward passes
    private readonly int _outputGroupSize; // threads per row in the output layer (a logit each)
    private readonly Action<Index1D, StackDims, ArrayView<float>, int, ArrayView<float>, ArrayView<float>> _startState;
    private readonly Action<KernelConfig, StackDims, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, int, ArrayView<float>,
        ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, DropoutSettings> _forwardPass;
    private readonly Action<KernelConfig, StackDims, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, float,
        ArrayView<float>, ArrayView<float>, DropoutSettings> _outputLayer;
    private readonly Action<KernelConfig, StackDims, ArrayView<float>, ArrayView<int>, int, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, DropoutSettings> _backwardPass;
    private readonly Action<Index1D, StackDims, ArrayView<float>, int, ArrayView<float>, ArrayView<float>, DropoutSettings> _inputGradients;
    private readonly Action<Index1D, StackDims, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, ArrayView<float>> _weightGradients;
    private readonly Action<Index1D, StackDims, ArrayView<float>, ArrayView<float>, ArrayView<float>> _carryState;

    private readonly Action<Index1D, StackDims, ArrayView<float>, ArrayView<float>> _transposeWeights;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _wT;      // the forward passes' transposed Waa and Wax (TransposeWeights)
    private readonly DeviceTrainingState _state;                      // parameters, gradients, moments, loss history
    private MemoryBuffer1D<int, Stride1D.Dense>? _x, _y;               // (T, B) ids
    private MemoryBuffer1D<float, Stride1D.Dense>? _h, _c;             // L × ((T+1), B, H) states (c: LSTM)
    private MemoryBuffer1D<float, Stride1D.Dense>? _act;               // L × (T, B, G·H) gates
    private MemoryBuffer1D<float, Stride1D.Dense>? _an;                // L × (T, B, H) the GRU's Waa_n·h₋
    private MemoryBuffer1D<float, Stride1D.Dense>? _u;                 // L × (T, B, H) inputs 1 … L
    private MemoryBuffer1D<float, Stride1D.Dense>? _dPx, _dPa;         // L × (T, B, G·H)
    private MemoryBuffer1D<float, Stride1D.Dense>? _dhExt;             // (T, B, H) gradient handed to the layer below
    private MemoryBuffer1D<float, Stride1D.Dense>? _dhc;               // (2, B, H) backward scratch
    private MemoryBuffer1D<float, Stride1D.Dense>? _dy, _loss;         // (T, B, V), (T, B)
    private int _rowCapacity;
    private int _launches;

    /// <param name="accelerator">The device; disposed with the backend when ownsAccelerator.</param>
    /// <param name="shape">The model's cell, depth and size.</param>
    /// <param name="dropout">Dropout while training (Step and Gradients; never EvaluateSum).</param>
    /// <param name="ownsAccelerator">Dispose the accelerator with the backend.</param>
    /// <param name="ownedContext">The ILGPU context to dispose last, when the backend made it.</param>
    public IlgpuStackBackend(Accelerator accelerator, ModelShape shape, DropoutConfig dropout, bool ownsAccelerator = true, IDisposable? ownedContext = null)
    {
        _acc = accelerator;
        _memory = new DeviceMemory(accelerator);
        _uploads = new BatchUploads(accelerator);
        _ownsAccelerator = ownsAccelerator;
        _ownedContext = ownedContext;
        _dropout = dropout;
        Shape = shape;
        _groupSize = GroupSize.For(shape.H, _acc.WarpSize, _acc.MaxNumThreadsPerGroup);
        _outputGroupSize = GroupSize.For(shape.V, _acc.WarpSize, _acc.MaxNumThreadsPerGroup);
        _startState = _acc.LoadAutoGroupedStreamKernel<Index1D, StackDims, ArrayView<float>, int, ArrayView<float>, ArrayView<float>>(StackKernels.StartState);
        _transposeWeights = _acc.LoadAutoGroupedStreamKernel<Index1D, StackDims, ArrayView<float>, ArrayView<float>>(StackKernels.TransposeWeights);
        _forwardPass = _acc.LoadStreamKernel<StackDims, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, int, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, DropoutSettings>(StackKernels.ForwardPass);
        _outputLayer = _acc.LoadStreamKernel<StackDims, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, float,
            ArrayView<float>, ArrayView<float>, DropoutSettings>(StackKernels.OutputLayer);
        _backwardPass = _acc.LoadStreamKernel<StackDims, ArrayView<float>, ArrayView<int>, int, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, DropoutSettings>(StackKernels.BackwardPass);
        _inputGradients = _acc.LoadAutoGroupedStreamKernel<Index1D, StackDims, ArrayView<float>, int, ArrayView<float>, ArrayView<float>, DropoutSettings>(StackKernels.InputGradients);
        _weightGradients = _acc.LoadAutoGroupedStreamKernel<Index1D, StackDims, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>>(StackKernels.WeightGradients);
        _carryState = _acc.LoadAutoGroupedStreamKernel<Index1D, StackDims, ArrayView<float>, ArrayView<float>, ArrayView<float>>(StackKernels.CarryState);

        _state = new DeviceTrainingState(_acc, shape.ParameterCount, shape.StateSize, Allocate<float>);
        var dims = shape.Stack(1, 1);
        _wT = Allocate<float>(2L * dims.Layers * dims.H * dims.GH);
    }

    public string Device => DeviceMemory.Name(_acc);

    public int LaunchesPerStep => _launches;

    /// <summary>Bytes of device memory allocated so far (buffers grow only for a larger batch).</summary>
    internal long DeviceBytes => _memory.Bytes;

    /// <summary>How many times a step's upload has waited for the device (for tests).</summary>
    internal int UploadWaits => _uploads.Waits;

    /// <summary>Threads per group of the passes and of the output layer (for tests).</summary>
    internal int PassGroupSize => _groupSize;
    internal int OutputGroupSize => _outputGroupSize;

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
        var d = Shape.Stack(batch.B, batch.T);
        _launches = 0;
        ForwardAndBackward(batch, d, s.CarryState, _dropout.ForUpdate(_state.Updates + 1));
        _state.FinishStep(d.Rows, _loss!.View, d.B, s, Launch);
        if (s.CarryState)
        {
            Launch(() => _carryState(d.B * Shape.StateSize, d, _h!.View, _c!.View, _state.Carry));
            _state.Carried = d.B;
        }
    }

    public float[] TakeLosses() => _state.TakeLosses();

    /// <summary>The next update's gradient, with its dropout mask, without counting an update.</summary>
    public float Gradients(Batch batch, bool carryState, Span<float> gradients)
    {
        var d = Shape.Stack(batch.B, batch.T);
        ForwardAndBackward(batch, d, carryState, _dropout.ForUpdate(_state.Updates + 1));
        _state.DownloadGradients(gradients);
        var rowLoss = new float[d.Rows];
        _loss!.View.SubView(0, d.Rows).CopyToCPU(rowLoss);
        return (float)(rowLoss.Sum(v => (double)v) / d.B);
    }

    public double EvaluateSum(Batch batch)
    {
        var d = Shape.Stack(batch.B, batch.T);
        UploadBatch(batch, d);
        int launches = _launches; // LaunchesPerStep counts training steps only
        Forward(d, carryState: false, DropoutSettings.None, gradScale: 0f);
        _launches = launches;
        var rowLoss = new float[d.Rows];
        _loss!.View.SubView(0, d.Rows).CopyToCPU(rowLoss);
        return rowLoss.Sum(v => (double)v);
    }

    public void Dispose()
    {
        _uploads.Dispose();
        _state.Dispose();
        DeviceMemory.Release(_wT, _x, _y, _h, _c, _act, _an, _u, _dPx, _dPa, _dhExt, _dhc, _dy, _loss, _ownsAccelerator ? _acc : null, _ownedContext);
    }

    /// <summary>
    /// Initial state, transposed weights, L forward passes, output layer, L backward passes with
    /// L − 1 input gradients between them, weight gradients: 3L + 3 launches whatever T and B.
    /// </summary>
    private void ForwardAndBackward(Batch batch, StackDims d, bool carryState, DropoutSettings drop)
    {
        UploadBatch(batch, d);
        Forward(d, carryState, drop, gradScale: 1f / d.B);
        var config = new KernelConfig(d.B, _groupSize);
        for (int l = d.Layers - 1; l >= 0; l--)
        {
            int layer = l;
            Launch(() => _backwardPass(config, d, _state.P, _y!.View, layer, H(d, layer), C(d, layer), Act(d, layer), An(d, layer),
                _dy!.View, _dhExt!.View, _dhc!.View, DPx(d, layer), DPa(d, layer), drop));
            if (layer > 0)
                Launch(() => _inputGradients(d.Rows * d.H, d, _state.P, layer, DPx(d, layer), _dhExt!.View, drop));
        }
        Launch(() => _weightGradients(d.ParameterCount, d, _x!.View, _h!.View, _u!.View, _dy!.View, _dPx!.View, _dPa!.View, _state.G));
    }

    /// <summary>Initial state, the weights transposed, every layer's forward pass and the output layer (L + 3 launches).</summary>
    private void Forward(StackDims d, bool carryState, DropoutSettings drop, float gradScale)
    {
        if (carryState)
            _state.EnsureCarry(d.B);
        Launch(() => _startState(d.B * Shape.StateSize, d, _state.Carry, carryState ? 1 : 0, _h!.View, _c!.View));
        Launch(() => _transposeWeights((int)_wT.Length, d, _state.P, _wT.View));
        var config = new KernelConfig(d.B, _groupSize);
        for (int l = 0; l < d.Layers; l++)
        {
            int layer = l;
            var below = layer > 0 ? H(d, layer - 1) : H(d, layer);
            Launch(() => _forwardPass(config, d, _state.P, _wT.View, _x!.View, _y!.View, layer, below, H(d, layer), C(d, layer), Act(d, layer),
                An(d, layer), U(d, layer), drop));
        }
        Launch(() => _outputLayer(new KernelConfig(d.Rows, _outputGroupSize), d, _state.P, _y!.View, H(d, d.Layers - 1), U(d, d.Layers), gradScale,
            _dy!.View, _loss!.View, drop));
    }

    // Each layer's view of the per-layer buffers, cut for this step's T and B.
    private ArrayView<float> H(StackDims d, int layer) => _h!.View.SubView((long)layer * (d.Rows + d.B) * d.H, (long)(d.Rows + d.B) * d.H);

    private ArrayView<float> C(StackDims d, int layer) => d.Cell == CellKind.Lstm ? _c!.View.SubView((long)layer * (d.Rows + d.B) * d.H, (long)(d.Rows + d.B) * d.H) : _c!.View;

    private ArrayView<float> Act(StackDims d, int layer) => _act!.View.SubView((long)layer * d.Rows * d.GH, (long)d.Rows * d.GH);

    private ArrayView<float> An(StackDims d, int layer) => d.Cell == CellKind.Gru ? _an!.View.SubView((long)layer * d.Rows * d.H, (long)d.Rows * d.H) : _an!.View;

    /// <summary>Input `input` (1 … L) at (input − 1)·T·B·H; layer 0 has none and gets a view it never reads.</summary>
    private ArrayView<float> U(StackDims d, int input) => _u!.View.SubView((long)Math.Max(0, input - 1) * d.Rows * d.H, (long)d.Rows * d.H);

    private ArrayView<float> DPx(StackDims d, int layer) => _dPx!.View.SubView((long)layer * d.Rows * d.GH, (long)d.Rows * d.GH);

    private ArrayView<float> DPa(StackDims d, int layer) => _dPa!.View.SubView((long)layer * d.Rows * d.GH, (long)d.Rows * d.GH);

    private void UploadBatch(Batch batch, StackDims d)
    {
        int rows = d.Rows;
        if (rows > _rowCapacity || _h is null)
        {
            // The largest buffer a row: _h's (and _c's) L·2·H, _act's L·GH, _dy's V.
            int capacity = DeviceMemory.GrownRows(rows, _rowCapacity, Math.Max(Math.Max(2L * d.Layers * d.H, (long)d.Layers * d.GH), d.V));
            _acc.DefaultStream.Synchronize(); // the queued steps are done with the buffers freed here
            foreach (var buffer in new MemoryBuffer?[] { _x, _y, _h, _c, _act, _an, _u, _dPx, _dPa, _dhExt, _dhc, _dy, _loss })
                buffer?.Dispose();
            long L = d.Layers, H = d.H, GH = d.GH;
            _x = Allocate<int>(capacity);
            _y = Allocate<int>(capacity);
            // (T+1)·B·H ≤ (rows + B)·H ≤ 2·rows·H per layer.
            _h = Allocate<float>(L * 2 * capacity * H);
            _c = Allocate<float>(d.Cell == CellKind.Lstm ? L * 2 * capacity * H : 1);
            _act = Allocate<float>(L * capacity * GH);
            _an = Allocate<float>(d.Cell == CellKind.Gru ? L * capacity * H : 1);
            _u = Allocate<float>(L * capacity * H);
            _dPx = Allocate<float>(L * capacity * GH);
            _dPa = Allocate<float>(L * capacity * GH);
            _dhExt = Allocate<float>(capacity * H);
            _dhc = Allocate<float>(2 * capacity * H); // B ≤ rows
            _dy = Allocate<float>((long)capacity * d.V);
            _loss = Allocate<float>(capacity);
            _rowCapacity = capacity;
        }
        _uploads.Upload(batch, _x!.View, _y!.View);
    }

    /// <summary>Device memory; running out of it is a UserError naming the size and what to make smaller.</summary>
    internal MemoryBuffer1D<T, Stride1D.Dense> Allocate<T>(long length)
        where T : unmanaged => _memory.Allocate<T>(length, "--hidden, --batch or --layers");

    private void Launch(Action launch)
    {
        launch();
        _launches++;
    }
}
