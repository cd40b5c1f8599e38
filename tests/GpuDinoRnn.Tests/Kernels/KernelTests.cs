// Each kernel alone on ILGPU's CPU accelerator, its output buffer poisoned with NaN first so an
// element it fails to write shows, compared with the float64 reference's intermediate values.
using GpuDinoRnn.Backends;
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;
using GpuDinoRnn.Tests.Reference;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Kernels;

public sealed class KernelTests : IDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly Context _context;
    private readonly Accelerator _acc;
    private readonly ModelShape _shape = new(7, 10);
    private readonly Parameters _p;
    private readonly Batch _batch;
    private readonly RnnDims _d;
    private readonly ReferenceResult _ref;

    public KernelTests(ITestOutputHelper output)
    {
        _output = output;
        _context = Devices.CreateContext(threads: 2, includeUnsupported: false);
        _acc = _context.GetCPUDevice(0).CreateAccelerator(_context);
        _p = TestData.RandomParameters(_shape, seed: 17);
        _batch = Batch.FromEncoded(TestData.RandomNames(4, _shape.V, seed: 6, minLength: 1, maxLength: 6));
        _d = _shape.Dims(_batch.B, _batch.T);
        _ref = ReferenceRnn.Run(TestData.ToDouble(_p.Data), _shape.H, _shape.V, _batch);
    }

    public void Dispose()
    {
        _acc.Dispose();
        _context.Dispose();
    }

    private MemoryBuffer1D<float, Stride1D.Dense> Upload(float[] data) => _acc.Allocate1D(data);

    private MemoryBuffer1D<int, Stride1D.Dense> Upload(int[] data) => _acc.Allocate1D(data);

    private MemoryBuffer1D<float, Stride1D.Dense> Poisoned(long length)
    {
        var buffer = _acc.Allocate1D<float>(length);
        var nan = new float[length];
        Array.Fill(nan, float.NaN);
        buffer.CopyFromCPU(nan);
        return buffer;
    }

    private static float[] F(double[] x) => x.Select(v => (float)v).ToArray();

    /// <summary>A group per name, of a size that leaves a remainder of units (H = 7, groups of 4 on the emulator).</summary>
    private KernelConfig PassConfig(bool shared) =>
        new(_d.B, _acc.MaxNumThreadsPerGroup, SharedMemoryConfig.RequestDynamic<float>(shared ? _d.H * _d.H : 1));

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ForwardPassWritesEveryStateAndCarriesPaddedOnes(bool shared)
    {
        var k = _acc.LoadStreamKernel<RnnDims, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int>(RnnKernels.ForwardPass);
        var transpose = _acc.LoadAutoGroupedStreamKernel<Index1D, RnnDims, ArrayView<float>, ArrayView<float>>(RnnKernels.TransposeWaa);
        using var p = Upload(_p.Data);
        using var x = Upload(_batch.X);
        using var y = Upload(_batch.Y);
        using var a = Poisoned((_d.T + 1) * _d.B * _d.H);
        // Without shared memory the pass reads TransposeWaa's copy; with it, that copy is never read (NaN).
        using var waaT = Poisoned(_d.H * _d.H);
        if (!shared)
            transpose(_d.H * _d.H, _d, p.View, waaT.View);
        a.View.SubView(0, _d.B * _d.H).MemSetToZero();
        k(PassConfig(shared), _d, p.View, x.View, y.View, a.View, waaT.View, shared ? 1 : 0);
        TestData.AssertClose(_output, $"ForwardPass a (Waa in shared memory: {shared})", _ref.A, a.GetAsArray1D(), rtol: 1e-5, atol: 1e-6);
    }

    [Fact]
    public void TransposeWaaWritesEveryElement()
    {
        var k = _acc.LoadAutoGroupedStreamKernel<Index1D, RnnDims, ArrayView<float>, ArrayView<float>>(RnnKernels.TransposeWaa);
        using var p = Upload(_p.Data);
        using var waaT = Poisoned(_d.H * _d.H);
        k(_d.H * _d.H, _d, p.View, waaT.View);
        var got = waaT.GetAsArray1D();
        for (int i = 0; i < _d.H; i++)
            for (int j = 0; j < _d.H; j++)
                Assert.Equal(_p.Data[_d.WaaOffset + i * _d.H + j], got[j * _d.H + i]);
    }

    [Fact]
    public void OutputLayerWritesLossAndGradientOfEveryRow()
    {
        var k = _acc.LoadStreamKernel<RnnDims, ArrayView<float>, ArrayView<int>, ArrayView<float>, float, ArrayView<float>, ArrayView<float>>(LossKernels.OutputLayer);
        using var p = Upload(_p.Data);
        using var y = Upload(_batch.Y);
        using var a = Upload(F(_ref.A));
        using var dy = Poisoned(_d.Rows * _d.V);
        using var loss = Poisoned(_d.Rows);
        // Groups of 4 threads (the emulator's most) for V = 10 logits: each thread takes two or three.
        k(new KernelConfig(_d.Rows, _acc.MaxNumThreadsPerGroup), _d, p.View, y.View, a.View, 1f / _d.B, dy.View, loss.View);
        TestData.AssertClose(_output, "OutputLayer loss", _ref.RowLoss, loss.GetAsArray1D(), rtol: 1e-5, atol: 1e-6);
        TestData.AssertClose(_output, "OutputLayer dy", _ref.Dy, dy.GetAsArray1D(), rtol: 1e-5, atol: 1e-7);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void BackwardPassWritesDzOfEveryRow(bool shared)
    {
        var k = _acc.LoadStreamKernel<RnnDims, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(RnnKernels.BackwardPass);
        using var p = Upload(_p.Data);
        using var y = Upload(_batch.Y);
        using var a = Upload(F(_ref.A));
        using var dy = Upload(F(_ref.Dy));
        using var dz = Poisoned(_d.Rows * _d.H);
        k(PassConfig(shared), _d, p.View, y.View, a.View, dy.View, dz.View, shared ? 1 : 0);
        TestData.AssertClose(_output, $"BackwardPass dz (Waa in shared memory: {shared})", _ref.Dz, dz.GetAsArray1D(), rtol: 1e-4, atol: 1e-7);
    }

    [Fact]
    public void WeightGradientsWritesEveryElement()
    {
        var k = _acc.LoadAutoGroupedStreamKernel<Index1D, RnnDims, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(RnnKernels.WeightGradients);
        using var x = Upload(_batch.X);
        using var a = Upload(F(_ref.A));
        using var dy = Upload(F(_ref.Dy));
        using var dz = Upload(F(_ref.Dz));
        using var g = Poisoned(_d.ParameterCount);
        k(_d.ParameterCount, _d, x.View, a.View, dy.View, dz.View, g.View);
        TestData.AssertClose(_output, "WeightGradients g", _ref.Grad, g.GetAsArray1D(), rtol: 1e-4, atol: 1e-6);
    }

    [Fact]
    public void CarryStateCopiesTheFinalState()
    {
        var k = _acc.LoadAutoGroupedStreamKernel<Index1D, RnnDims, ArrayView<float>, ArrayView<float>>(RnnKernels.CarryState);
        var states = F(_ref.A);
        using var a = Upload(states);
        using var carry = Poisoned(_d.B * _d.H);
        k(_d.B * _d.H, _d, a.View, carry.View);
        var expected = TestData.ToDouble(states.AsSpan(_d.T * _d.B * _d.H, _d.B * _d.H));
        TestData.AssertClose(_output, "CarryState", expected, carry.GetAsArray1D(), rtol: 0, atol: 0);
    }

    [Theory]
    [InlineData(OptimizerKind.Sgd, 0, 0.02f)]
    [InlineData(OptimizerKind.Sgd, 1, 0.3f)]
    [InlineData(OptimizerKind.Sgd, 0, 0f)]
    [InlineData(OptimizerKind.Momentum, 1, 0.3f)]
    [InlineData(OptimizerKind.Adam, 0, 0.02f)]
    [InlineData(OptimizerKind.AdamW, 1, 0.3f)]
    [InlineData(OptimizerKind.Adagrad, 0, 0f)]
    [InlineData(OptimizerKind.RmsProp, 1, 0.3f)]
    public void UpdateClipsAndStepsLikeTheReference(OptimizerKind kind, int normMode, float clip)
    {
        var partials = _acc.LoadAutoGroupedStreamKernel<Index1D, int, ArrayView<float>, ArrayView<float>>(UpdateKernels.SquaredNormPartials);
        var update = _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, OptimizerSettings>(UpdateKernels.Update);
        using var p = Upload(_p.Data);
        using var g = Upload(F(_ref.Grad));
        using var m = _acc.Allocate1D<float>(_d.ParameterCount);
        using var v = _acc.Allocate1D<float>(_d.ParameterCount);
        m.MemSetToZero();
        v.MemSetToZero();
        using var partial = Poisoned(UpdateKernels.NormPartials);
        using var history = Upload(new[] { float.NaN, 12.5f }); // this step's recorded loss, at slot 1
        partials(UpdateKernels.NormPartials, _d.ParameterCount, g.View, partial.View);
        double sq = _ref.Grad.Sum(x => x * x);
        Assert.Equal(sq, partial.GetAsArray1D().Sum(x => (double)x), sq * 1e-5);
        var config = new OptimizerConfig(kind);
        var mode = normMode == 1 ? ClipMode.Norm : ClipMode.Value;
        var reference = new ReferenceOptimizer(config, _d.ParameterCount);
        var expected = TestData.ToDouble(_p.Data);
        for (int t = 1; t <= 3; t++) // three steps: moments and bias corrections at work
        {
            update(_d.ParameterCount, p.View, g.View, m.View, v.View, partial.View, history.View, 1, new StepSettings(0.05f, clip, mode, false, config).ForUpdate(t));
            expected = reference.Step(expected, _ref.Grad, 0.05, clip, mode);
        }
        TestData.AssertClose(_output, $"Update ({kind}, mode {normMode}, clip {clip})", expected, p.GetAsArray1D(), rtol: 1e-4, atol: 1e-5);
    }

    [Theory]
    [InlineData(float.NaN, OptimizerKind.Sgd)]
    [InlineData(float.PositiveInfinity, OptimizerKind.Sgd)]
    [InlineData(float.NaN, OptimizerKind.Adam)] // Adam writes both moments: a skipped step must leave them too
    [InlineData(float.PositiveInfinity, OptimizerKind.Momentum)]
    [InlineData(float.NaN, OptimizerKind.RmsProp)]
    public void UpdateSkipsAStepWhoseRecordedLossIsNotFinite(float recorded, OptimizerKind kind)
    {
        var update = _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, OptimizerSettings>(UpdateKernels.Update);
        var random = new Random(21);
        var m0 = Enumerable.Range(0, _d.ParameterCount).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        var v0 = Enumerable.Range(0, _d.ParameterCount).Select(_ => (float)random.NextDouble()).ToArray();
        using var p = Upload(_p.Data);
        using var g = Upload(F(_ref.Grad));
        using var m = Upload(m0);
        using var v = Upload(v0);
        using var partial = Upload(new float[UpdateKernels.NormPartials]);
        using var history = Upload(new[] { recorded }); // BatchLoss records a non-finite gradient as NaN
        update(_d.ParameterCount, p.View, g.View, m.View, v.View, partial.View, history.View, 0, new StepSettings(0.05f, 0f, ClipMode.Value, false, new OptimizerConfig(kind)).ForUpdate(1));
        Assert.Equal(_p.Data, p.GetAsArray1D());
        Assert.Equal(m0, m.GetAsArray1D());
        Assert.Equal(v0, v.GetAsArray1D());
    }

    [Fact]
    public void BatchLossAveragesTheRowsOverNames()
    {
        var k = _acc.LoadAutoGroupedStreamKernel<Index1D, int, ArrayView<float>, float, ArrayView<float>, ArrayView<float>, int>(LossKernels.BatchLoss);
        using var loss = Upload(F(_ref.RowLoss));
        var sums = new float[UpdateKernels.NormPartials];
        sums[0] = 2f;
        using var partial = Upload(sums);
        using var history = Poisoned(4);
        k(1, _d.Rows, loss.View, _d.B, partial.View, history.View, 2);
        var h = history.GetAsArray1D();
        Assert.Equal(_ref.Loss, h[2], _ref.Loss * 1e-6);
        Assert.True(float.IsNaN(h[0]) && float.IsNaN(h[1]) && float.IsNaN(h[3]), "BatchLoss wrote outside its slot");
        sums[5] = float.PositiveInfinity; // a non-finite gradient is reported as a NaN loss
        partial.CopyFromCPU(sums);
        k(1, _d.Rows, loss.View, _d.B, partial.View, history.View, 0);
        Assert.True(float.IsNaN(history.GetAsArray1D()[0]));
    }
}
