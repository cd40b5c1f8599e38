// One suite for every backend: loss, every gradient, clipping, the SGD update, a carried state
// and evaluation, each against the float64 reference. Concrete classes below pick the device;
// a device that is absent makes its tests skip with the reason, never pass.
using GpuDinoRnn.Backends;
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;
using GpuDinoRnn.Tests.Reference;
using ILGPU.Runtime.CPU;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Backends;

public abstract class BackendTests(ITestOutputHelper output)
{
    protected ITestOutputHelper Output { get; } = output;

    /// <summary>The backend under test, or null with the reason it is absent.</summary>
    protected abstract (IBackend? Backend, string? Missing) Create(ModelShape shape);

    private IBackend CreateOrSkip(ModelShape shape)
    {
        var (backend, missing) = Create(shape);
        Skip.If(backend is null, missing);
        return backend!;
    }

    /// <summary>Why this suite leaves out its minutes-long runs (many steps, or H 1024 through every gate), or null.</summary>
    protected virtual string? LongRunsLeftOut => null;

    /// <summary>Runs an unrelated, larger batch first so stale buffer contents would show.</summary>
    private static void Poison(IBackend backend, int v)
    {
        var junk = Batch.FromEncoded(TestData.RandomNames(7, v, seed: 99, minLength: 6, maxLength: 9));
        Span<float> scratch = new float[backend.Shape.ParameterCount];
        backend.Gradients(junk, carryState: false, scratch);
    }

    [SkippableTheory]
    [InlineData(5, 7, 4)]
    [InlineData(16, 27, 1)]
    [InlineData(33, 11, 9)]
    public void LossAndEveryGradientMatchTheReference(int h, int v, int names)
    {
        var shape = new ModelShape(h, v);
        using var backend = CreateOrSkip(shape);
        var p = TestData.RandomParameters(shape, seed: h + v);
        backend.Upload(p);
        Poison(backend, v);
        var batch = Batch.FromEncoded(TestData.RandomNames(names, v, seed: names, minLength: 1, maxLength: 8));
        var grad = new float[shape.ParameterCount];
        Array.Fill(grad, float.NaN); // an element the backend does not write shows
        float loss = backend.Gradients(batch, carryState: false, grad);

        Output.WriteLine(backend.Device);
        TestData.AssertGradientsMatch(Output, shape, ReferenceRnn.Run(TestData.ToDouble(p.Data), h, v, batch), loss, grad);
    }

    [SkippableFact]
    public void AThousandTwentyFourHiddenUnitsWork()
    {
        // Waa no longer fits in a GPU group's shared memory, and a group has fewer threads than units.
        var shape = new ModelShape(1024, 6);
        using var backend = CreateOrSkip(shape);
        var p = TestData.RandomParameters(shape, seed: 2, scale: 0.05);
        backend.Upload(p);
        var batch = Batch.FromEncoded(TestData.RandomNames(2, shape.V, seed: 1, minLength: 1, maxLength: 3));
        var grad = new float[shape.ParameterCount];
        Array.Fill(grad, float.NaN); // an element the backend does not write shows
        float loss = backend.Gradients(batch, carryState: false, grad);
        TestData.AssertGradientsMatch(Output, shape, ReferenceRnn.Run(TestData.ToDouble(p.Data), shape.H, shape.V, batch), loss, grad);
    }

    [SkippableTheory]
    [InlineData(ClipMode.Value, 0.05f)]
    [InlineData(ClipMode.Norm, 0.5f)]
    [InlineData(ClipMode.Value, 0f)]
    public void StepClipsAndUpdatesLikeTheReference(ClipMode mode, float clip)
    {
        var shape = new ModelShape(12, 9);
        using var backend = CreateOrSkip(shape);
        var p = TestData.RandomParameters(shape, seed: 5);
        backend.Upload(p);
        Poison(backend, shape.V);
        backend.Upload(p);
        var batch = Batch.FromEncoded(TestData.RandomNames(6, shape.V, seed: 11));
        var reference = ReferenceRnn.Run(TestData.ToDouble(p.Data), shape.H, shape.V, batch);
        if (clip > 0)
        {
            // The case must really clip: some element above the threshold, or the norm above it.
            double norm = Math.Sqrt(reference.Grad.Sum(g => g * g));
            Assert.True(mode == ClipMode.Value ? reference.Grad.Any(g => Math.Abs(g) > clip) : norm > clip, "clipping is not active in this case");
        }
        backend.Step(batch, new StepSettings(0.1f, clip, mode, CarryState: false));
        var after = new Parameters(shape);
        backend.Download(after);
        var expected = ReferenceRnn.SgdStep(TestData.ToDouble(p.Data), reference.Grad, 0.1, clip, mode);
        TestData.AssertClose(Output, $"parameters after a step ({mode}, clip {clip})", expected, after.Data, rtol: 1e-5, atol: 1e-6);
        var losses = backend.TakeLosses();
        Assert.Single(losses);
        Assert.Equal(reference.Loss, losses[0], reference.Loss * 1e-5);
        Assert.Empty(backend.TakeLosses());
    }

    [SkippableTheory]
    [InlineData(OptimizerKind.Momentum, ClipMode.Norm, 1f)]
    [InlineData(OptimizerKind.Adam, ClipMode.Value, 0.05f)]
    [InlineData(OptimizerKind.AdamW, ClipMode.Norm, 0.5f)]
    [InlineData(OptimizerKind.Adagrad, ClipMode.Value, 0f)]
    [InlineData(OptimizerKind.RmsProp, ClipMode.Norm, 1f)]
    public void EveryOptimizerFollowsTheReferenceOverSeveralSteps(OptimizerKind kind, ClipMode mode, float clip)
    {
        var shape = new ModelShape(10, 9);
        using var backend = CreateOrSkip(shape);
        var p = TestData.RandomParameters(shape, seed: 31);
        backend.Upload(p);
        var config = new OptimizerConfig(kind);
        var reference = new ReferenceOptimizer(config, shape.ParameterCount);
        var expected = TestData.ToDouble(p.Data);
        var batches = Enumerable.Range(0, 4).Select(i => Batch.FromEncoded(TestData.RandomNames(5, shape.V, seed: 40 + i))).ToList();
        foreach (var batch in batches)
        {
            var r = ReferenceRnn.Run(expected, shape.H, shape.V, batch);
            expected = reference.Step(expected, r.Grad, 0.02, clip, mode);
            backend.Step(batch, new StepSettings(0.02f, clip, mode, CarryState: false, config));
        }
        var after = new Parameters(shape);
        backend.Download(after);
        TestData.AssertClose(Output, $"{kind} after 4 steps", expected, after.Data, rtol: 1e-3, atol: 1e-5);
        Assert.Equal(4, backend.SaveState().Updates);
        var norm = backend.LastGradientNorm();
        Assert.True(norm > 0 && float.IsFinite(norm));
    }

    [SkippableFact]
    public void SavedStateRestoresAnOptimizerMidRun()
    {
        var shape = new ModelShape(6, 8);
        var config = new OptimizerConfig(OptimizerKind.Adam);
        var batches = Enumerable.Range(0, 6).Select(i => Batch.FromEncoded(TestData.RandomNames(4, shape.V, seed: 70 + i))).ToList();
        var settings = new StepSettings(0.01f, 1f, ClipMode.Norm, CarryState: false, config);
        var p0 = TestData.RandomParameters(shape, seed: 3);
        using var whole = CreateOrSkip(shape);
        whole.Upload(p0);
        batches.ForEach(b => whole.Step(b, settings));
        using var first = CreateOrSkip(shape);
        first.Upload(p0);
        batches.Take(3).ToList().ForEach(b => first.Step(b, settings));
        var middle = new Parameters(shape);
        first.Download(middle);
        var state = first.SaveState();
        using var second = CreateOrSkip(shape);
        second.Upload(middle);
        second.LoadState(state);
        batches.Skip(3).ToList().ForEach(b => second.Step(b, settings));
        Parameters a = new(shape), b = new(shape);
        whole.Download(a);
        second.Download(b);
        Assert.Equal(a.Data, b.Data);
    }

    [SkippableFact]
    public void CarriedStateFlowsFromOneNameToTheNext()
    {
        var shape = new ModelShape(10, 8);
        using var backend = CreateOrSkip(shape);
        var p = TestData.RandomParameters(shape, seed: 21);
        backend.Upload(p);
        backend.ResetState();
        var names = TestData.RandomNames(3, shape.V, seed: 4, minLength: 2, maxLength: 5);
        var settings = new StepSettings(0.05f, 5f, ClipMode.Value, CarryState: true);
        var pd = TestData.ToDouble(p.Data);
        double[]? state = null;
        var expectedLosses = new List<double>();
        foreach (var name in names)
        {
            var batch = Batch.FromEncoded([name]);
            var r = ReferenceRnn.Run(pd, shape.H, shape.V, batch, state);
            expectedLosses.Add(r.Loss);
            state = r.A.AsSpan(batch.T * shape.H, shape.H).ToArray();
            pd = ReferenceRnn.SgdStep(pd, r.Grad, 0.05, 5, ClipMode.Value);
            backend.Step(batch, settings);
        }
        var losses = backend.TakeLosses();
        TestData.AssertClose(Output, "losses with a carried state", expectedLosses.ToArray(), losses, rtol: 1e-5, atol: 1e-6);
        var after = new Parameters(shape);
        backend.Download(after);
        TestData.AssertClose(Output, "parameters after three carried steps", pd, after.Data, rtol: 1e-4, atol: 1e-6);
    }

    [SkippableTheory]
    [InlineData(3)]
    [InlineData(40)] // the cpu backend cuts 16 or more into chunks run by themselves
    public void SeveralStreamsCarryTheirStatesFromChunkToChunk(int streams)
    {
        var shape = new ModelShape(9, 7);
        using var backend = CreateOrSkip(shape);
        var p = TestData.RandomParameters(shape, seed: 12);
        backend.Upload(p);
        backend.ResetState();
        var rng = new Random(5);
        var settings = new StepSettings(0.05f, 1f, ClipMode.Norm, CarryState: true);
        var pd = TestData.ToDouble(p.Data);
        double[]? state = null;
        var expected = new List<double>();
        for (int step = 0; step < 3; step++)
        {
            var batch = TestData.RandomStreamChunk(rng, streams, shape.V);
            var r = ReferenceRnn.Run(pd, shape.H, shape.V, batch, state);
            expected.Add(r.Loss);
            state = r.A.AsSpan(batch.T * batch.B * shape.H, batch.B * shape.H).ToArray();
            pd = ReferenceRnn.SgdStep(pd, r.Grad, 0.05, 1, ClipMode.Norm);
            backend.Step(batch, settings);
        }
        TestData.AssertClose(Output, $"losses of {streams} streams with carried states", expected.ToArray(), backend.TakeLosses(), rtol: 1e-5, atol: 1e-6);
        Assert.Equal(streams * shape.H, backend.SaveState().Carry.Length);
    }

    /// <summary>
    /// Carrying 3 streams, then 1, then 3 again: streams 1 and 2 of the last step start from
    /// zeros (the step before did not carry them), not from the states of two steps before.
    /// </summary>
    [SkippableFact]
    public void StreamsTheLastStepDidNotCarryStartFromZeros()
    {
        var shape = new ModelShape(9, 7);
        using var backend = CreateOrSkip(shape);
        var p = TestData.RandomParameters(shape, seed: 13);
        backend.Upload(p);
        backend.ResetState();
        var rng = new Random(6);
        var settings = new StepSettings(0.05f, 1f, ClipMode.Norm, CarryState: true);
        var pd = TestData.ToDouble(p.Data);
        var state = new double[3 * shape.H]; // every stream's, zeros where not carried
        var expected = new List<double>();
        foreach (int streams in new[] { 3, 1, 3 })
        {
            var batch = TestData.RandomStreamChunk(rng, streams, shape.V);
            var r = ReferenceRnn.Run(pd, shape.H, shape.V, batch, state.AsSpan(0, streams * shape.H).ToArray());
            expected.Add(r.Loss);
            Array.Clear(state);
            r.A.AsSpan(batch.T * batch.B * shape.H, batch.B * shape.H).CopyTo(state);
            pd = ReferenceRnn.SgdStep(pd, r.Grad, 0.05, 1, ClipMode.Norm);
            backend.Step(batch, settings);
        }
        TestData.AssertClose(Output, "losses of 3, 1 and 3 carried streams", expected.ToArray(), backend.TakeLosses(), rtol: 1e-5, atol: 1e-6);
    }

    [SkippableTheory]
    [InlineData(5)]
    [InlineData(40)]
    public void EvaluateSumsTheLossOfEveryRealCharacter(int names)
    {
        var shape = new ModelShape(9, 13);
        using var backend = CreateOrSkip(shape);
        var p = TestData.RandomParameters(shape, seed: 8);
        backend.Upload(p);
        Poison(backend, shape.V);
        var batch = Batch.FromEncoded(TestData.RandomNames(names, shape.V, seed: 2));
        var r = ReferenceRnn.Run(TestData.ToDouble(p.Data), shape.H, shape.V, batch);
        double sum = backend.EvaluateSum(batch);
        Output.WriteLine($"evaluate: {sum} vs reference {r.RowLoss.Sum()}");
        Assert.Equal(r.RowLoss.Sum(), sum, r.RowLoss.Sum() * 1e-5);
    }

    [SkippableFact]
    public void BeforeAnyStepTheGradientsAndTheirNormAreZero()
    {
        var shape = new ModelShape(16, 27);
        var batch = Batch.FromEncoded(TestData.RandomNames(5, shape.V, seed: 4));
        using (var used = CreateOrSkip(shape))
        {
            // A backend that trained and was freed first, so that recycled memory holds numbers.
            used.Upload(TestData.RandomParameters(shape, seed: 4));
            used.Step(batch, new StepSettings(0.1f, 5f, ClipMode.Norm, CarryState: false));
        }
        using var backend = CreateOrSkip(shape);
        backend.Upload(TestData.RandomParameters(shape, seed: 5));
        var gradients = new float[shape.ParameterCount];
        gradients.AsSpan().Fill(float.NaN);
        backend.DownloadGradients(gradients);
        Assert.Equal(0f, backend.LastGradientNorm());
        Assert.All(gradients, g => Assert.Equal(0f, g));
    }

    [SkippableFact]
    public void TrainingOnTheBundledNamesLowersTheLossAndRepeatsExactly()
    {
        Skip.If(LongRunsLeftOut is not null, LongRunsLeftOut);
        var dataset = Dataset.Load(TestData.BundledNames);
        var vocab = Vocabulary.FromNames(dataset.Names);
        var names = dataset.Names.Select(vocab.Encode).ToList();
        var shape = new ModelShape(24, vocab.Size);
        float[] Train()
        {
            using var backend = CreateOrSkip(shape);
            backend.Upload(Parameters.Initialize(shape, InitScheme.Xavier, seed: 3));
            var batcher = new Batcher(names, 16, ShuffleMode.Epoch, seed: 3);
            var settings = new StepSettings(0.5f, 5f, ClipMode.Norm, CarryState: false);
            for (int i = 0; i < 60; i++)
                backend.Step(batcher.Next(), settings);
            return backend.TakeLosses();
        }
        var first = Train();
        var second = Train();
        double early = first.Take(5).Average(), late = first.TakeLast(5).Average();
        Output.WriteLine($"mean loss of the first 5 steps {early:F3}, of the last 5 {late:F3}");
        Assert.True(late < early - 3, $"the loss did not fall: {early:F3} → {late:F3}");
        Assert.Equal(first, second);
    }
}

public sealed class CpuBackendTests(ITestOutputHelper output) : BackendTests(output)
{
    protected override (IBackend?, string?) Create(ModelShape shape) => (new CpuBackend(shape, threads: 2), null);
}

public sealed class CpuBackendSingleThreadTests(ITestOutputHelper output) : BackendTests(output)
{
    protected override (IBackend?, string?) Create(ModelShape shape) => (new CpuBackend(shape, threads: 1), null);
}

/// <summary>The course preset's tanh and exp (TrainOptions.PreciseMath), held to the same reference.</summary>
public sealed class CpuBackendPreciseMathTests(ITestOutputHelper output) : BackendTests(output)
{
    protected override (IBackend?, string?) Create(ModelShape shape) => (new CpuBackend(shape, threads: 1, preciseMath: true), null);
}

public sealed class IlgpuCpuBackendTests(ITestOutputHelper output) : BackendTests(output)
{
    protected override (IBackend?, string?) Create(ModelShape shape) => (Devices.Create("ilgpu-cpu", shape, threads: 2), null);

    [Fact]
    public void LaunchesPerStepDependNeitherOnTheNamesLengthNorOnTheBatchSize()
    {
        var shape = new ModelShape(8, 6);
        using var backend = Devices.Create("ilgpu-cpu", shape, threads: 2);
        backend.Upload(TestData.RandomParameters(shape, 1));
        var settings = new StepSettings(0.1f, 1f, ClipMode.Norm, CarryState: false);
        int Launches(int names, int longest)
        {
            var batch = Batch.FromEncoded(Enumerable.Range(0, names).Select(n => Enumerable.Range(1, 1 + n % longest).Select(c => 1 + c % 5).ToArray()).ToArray());
            Assert.Equal(Math.Min(names, longest) + 1, batch.T);
            backend.Step(batch, settings);
            return backend.LaunchesPerStep;
        }
        int small = Launches(4, 4), wide = Launches(64, 4), longer = Launches(64, 12);
        Output.WriteLine($"{small} launches with B = 4, T = 5; {wide} with B = 64, T = 5; {longer} with B = 64, T = 13");
        Assert.Equal(small, wide);
        Assert.Equal(small, longer);
        // State reset, forward pass, output layer, backward pass, weight gradients, norm partials, update, loss.
        Assert.Equal(8, small);
    }
}

/// <summary>
/// The ILGPU backend as on a GPU whose shared memory cannot hold Waa (H &gt; 110 on CUDA): the
/// emulator's is unlimited, so the limit is set to nothing here; the forward pass then reads the
/// transposed copy that one more launch per step makes.
/// </summary>
public sealed class IlgpuCpuGlobalWaaBackendTests(ITestOutputHelper output) : BackendTests(output)
{
    protected override (IBackend?, string?) Create(ModelShape shape)
    {
        var context = Devices.CreateContext(threads: 2, includeUnsupported: false);
        return (new IlgpuBackend(context.GetCPUDevice(0).CreateAccelerator(context), shape, sharedMemoryLimit: 0, ownedContext: context), null);
    }

    [Fact]
    public void EachStepTransposesWaaOnce()
    {
        var shape = new ModelShape(8, 6);
        using var backend = (IlgpuBackend)Create(shape).Item1!;
        backend.Upload(TestData.RandomParameters(shape, 1));
        backend.Step(Batch.FromEncoded([[1, 2, 3], [4]]), new StepSettings(0.1f, 1f, ClipMode.Norm, CarryState: false));
        Assert.Equal(9, backend.LaunchesPerStep);
    }
}

public sealed class CudaBackendTests(ITestOutputHelper output) : BackendTests(output)
{
    protected override (IBackend?, string?) Create(ModelShape shape) => GpuOrNull("cuda", shape);

    internal static (IBackend?, string?) GpuOrNull(string kind, ModelShape shape)
    {
        bool present = Devices.List(1).Any(d => d.Id.StartsWith(kind + ":", StringComparison.Ordinal) && d.Usable);
        return present ? (Devices.Create(kind, shape, 1), null) : (null, $"no usable {kind} device on this machine");
    }
}

public sealed class OpenClBackendTests(ITestOutputHelper output) : BackendTests(output)
{
    protected override (IBackend?, string?) Create(ModelShape shape) => CudaBackendTests.GpuOrNull("opencl", shape);
}
