// One suite for every backend of the models beyond the course's (gru, lstm, stacked layers,
// dropout): loss, every gradient, the update, optimizers, carried state, evaluation and resume,
// each against the float64 ReferenceStack. Concrete classes pick the device.
using GpuDinoRnn.Backends;
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;
using GpuDinoRnn.Tests.Reference;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Backends;

public abstract class StackBackendTests(ITestOutputHelper output)
{
    protected ITestOutputHelper Output { get; } = output;

    /// <summary>The backend under test, or null with the reason it is absent.</summary>
    protected abstract (IBackend? Backend, string? Missing) Create(ModelShape shape, DropoutConfig dropout);

    private IBackend CreateOrSkip(ModelShape shape, DropoutConfig dropout = default)
    {
        var (backend, missing) = Create(shape, dropout);
        Skip.If(backend is null, missing);
        return backend!;
    }

    /// <summary>Why this suite leaves out its minutes-long runs (many steps, or H 1024 through every gate), or null.</summary>
    protected virtual string? LongRunsLeftOut => null;

    /// <summary>Runs an unrelated, larger batch first so stale buffer contents would show.</summary>
    private static void Poison(IBackend backend)
    {
        var junk = Batch.FromEncoded(TestData.RandomNames(9, backend.Shape.V, seed: 99, minLength: 6, maxLength: 10));
        Span<float> scratch = new float[backend.Shape.ParameterCount];
        backend.Gradients(junk, carryState: false, scratch);
        backend.Step(junk, new StepSettings(0f, 0f, ClipMode.Value, CarryState: true));
        backend.ResetState();
    }

    private void AssertGradients(ModelShape shape, StackResult expected, float loss, float[] grad)
    {
        Output.WriteLine($"loss {loss} vs reference {expected.Loss}");
        Assert.Equal(expected.Loss, loss, expected.Loss * 1e-5);
        foreach (var name in Parameters.NamesOf(shape))
        {
            var (offset, dims) = Parameters.Layout(shape, name);
            int n = dims.Aggregate(1, (a, b) => a * b);
            var want = expected.Grad.AsSpan(offset, n);
            double scale = want.ToArray().Max(Math.Abs);
            Assert.True(scale > 0, $"d{name} is zero in the reference: the case tests nothing");
            TestData.AssertClose(Output, $"d{name}", want, grad.AsSpan(offset, n), rtol: 1e-4, atol: 2e-4 * scale);
        }
    }

    [SkippableTheory]
    [InlineData(CellKind.Rnn, 1, 0f, 6, 11, 5)]
    [InlineData(CellKind.Rnn, 3, 0.25f, 7, 9, 4)]
    [InlineData(CellKind.Gru, 1, 0f, 16, 27, 1)]
    [InlineData(CellKind.Gru, 2, 0.3f, 9, 8, 6)]
    [InlineData(CellKind.Lstm, 1, 0f, 33, 7, 5)]
    [InlineData(CellKind.Lstm, 2, 0.5f, 10, 12, 7)]
    public void LossAndEveryGradientMatchTheReference(CellKind cell, int layers, float dropout, int h, int v, int names)
    {
        var shape = new ModelShape(h, v, cell, layers);
        var drop = new DropoutConfig(dropout, Seed: 4);
        using var backend = CreateOrSkip(shape, drop);
        var p = TestData.RandomParameters(shape, seed: h + v);
        backend.Upload(p);
        Poison(backend);
        var batch = Batch.FromEncoded(TestData.RandomNames(names, v, seed: names, minLength: 1, maxLength: 8));
        var grad = new float[shape.ParameterCount];
        Array.Fill(grad, float.NaN);
        float loss = backend.Gradients(batch, carryState: false, grad);
        Output.WriteLine(backend.Device);
        // The poisoning step made one update: the gradient is the next update's, with its mask.
        var expected = ReferenceStack.Run(TestData.ToDouble(p.Data), shape, batch, dropout: drop.ForUpdate(2));
        AssertGradients(shape, expected, loss, grad);
    }

    [SkippableTheory]
    [InlineData(CellKind.Gru, 70, 2)]
    [InlineData(CellKind.Lstm, 130, 2)]
    [InlineData(CellKind.Lstm, 1024, 1)]
    [InlineData(CellKind.Gru, 1, 3)]
    public void WideAndNarrowLayersWork(CellKind cell, int h, int layers)
    {
        Skip.If(h > 500 && LongRunsLeftOut is not null, LongRunsLeftOut);
        // More units than a GPU group has threads, weights beyond a group's shared memory, and a single unit.
        var shape = new ModelShape(h, 6, cell, layers);
        using var backend = CreateOrSkip(shape);
        var p = TestData.RandomParameters(shape, seed: 2, scale: h > 500 ? 0.03 : 0.1);
        backend.Upload(p);
        var batch = Batch.FromEncoded(TestData.RandomNames(h > 500 ? 2 : 3, shape.V, seed: 1, minLength: 1, maxLength: h > 500 ? 2 : 4));
        var grad = new float[shape.ParameterCount];
        float loss = backend.Gradients(batch, carryState: false, grad);
        AssertGradients(shape, ReferenceStack.Run(TestData.ToDouble(p.Data), shape, batch), loss, grad);
    }

    [SkippableTheory]
    [InlineData(CellKind.Gru, ClipMode.Norm, 0.5f)]
    [InlineData(CellKind.Lstm, ClipMode.Value, 0.02f)]
    public void StepClipsAndUpdatesLikeTheReference(CellKind cell, ClipMode mode, float clip)
    {
        var shape = new ModelShape(8, 9, cell, 2);
        using var backend = CreateOrSkip(shape);
        var p = TestData.RandomParameters(shape, seed: 5);
        backend.Upload(p);
        Poison(backend);
        backend.Upload(p);
        var batch = Batch.FromEncoded(TestData.RandomNames(6, shape.V, seed: 11));
        var reference = ReferenceStack.Run(TestData.ToDouble(p.Data), shape, batch);
        double norm = Math.Sqrt(reference.Grad.Sum(g => g * g));
        Assert.True(mode == ClipMode.Value ? reference.Grad.Any(g => Math.Abs(g) > clip) : norm > clip, "clipping is not active in this case");
        backend.TakeLosses();
        backend.Step(batch, new StepSettings(0.1f, clip, mode, CarryState: false));
        var after = new Parameters(shape);
        backend.Download(after);
        var expected = ReferenceRnn.SgdStep(TestData.ToDouble(p.Data), reference.Grad, 0.1, clip, mode);
        TestData.AssertClose(Output, $"parameters after a step ({mode}, clip {clip})", expected, after.Data, rtol: 1e-5, atol: 1e-6);
        var losses = backend.TakeLosses();
        Assert.Single(losses);
        Assert.Equal(reference.Loss, losses[0], reference.Loss * 1e-5);
        Assert.Equal(norm, backend.LastGradientNorm(), norm * 1e-4);
    }

    [SkippableTheory]
    [InlineData(CellKind.Gru, OptimizerKind.Adam)]
    [InlineData(CellKind.Lstm, OptimizerKind.RmsProp)]
    [InlineData(CellKind.Rnn, OptimizerKind.Momentum)]
    public void OptimizersFollowTheReferenceOverSeveralStepsWithDropout(CellKind cell, OptimizerKind kind)
    {
        var shape = new ModelShape(7, 9, cell, 2);
        var drop = new DropoutConfig(0.2f, Seed: 12);
        using var backend = CreateOrSkip(shape, drop);
        var p = TestData.RandomParameters(shape, seed: 31);
        backend.Upload(p);
        var config = new OptimizerConfig(kind);
        var reference = new ReferenceOptimizer(config, shape.ParameterCount);
        var expected = TestData.ToDouble(p.Data);
        for (int i = 0; i < 4; i++)
        {
            var batch = Batch.FromEncoded(TestData.RandomNames(5, shape.V, seed: 40 + i));
            var r = ReferenceStack.Run(expected, shape, batch, dropout: drop.ForUpdate(i + 1));
            expected = reference.Step(expected, r.Grad, 0.02, 1f, ClipMode.Norm);
            backend.Step(batch, new StepSettings(0.02f, 1f, ClipMode.Norm, CarryState: false, config));
        }
        var after = new Parameters(shape);
        backend.Download(after);
        TestData.AssertClose(Output, $"{cell} with {kind} after 4 steps", expected, after.Data, rtol: 1e-3, atol: 1e-5);
        Assert.Equal(4, backend.SaveState().Updates);
    }

    [SkippableTheory]
    [InlineData(CellKind.Lstm)]
    [InlineData(CellKind.Gru)]
    public void SeveralStreamsCarryEveryLayersStateFromChunkToChunk(CellKind cell)
    {
        var shape = new ModelShape(6, 7, cell, 2);
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
            var batch = TestData.RandomStreamChunk(rng, 3, shape.V);
            var r = ReferenceStack.Run(pd, shape, batch, state);
            expected.Add(r.Loss);
            state = r.FinalState;
            pd = ReferenceRnn.SgdStep(pd, r.Grad, 0.05, 1, ClipMode.Norm);
            backend.Step(batch, settings);
        }
        TestData.AssertClose(Output, "losses of three streams with carried states", expected.ToArray(), backend.TakeLosses(), rtol: 1e-5, atol: 1e-6);
        var carry = backend.SaveState().Carry;
        Assert.Equal(3 * shape.StateSize, carry.Length);
        TestData.AssertClose(Output, "the carried state", state, carry, rtol: 1e-4, atol: 1e-5);
    }

    /// <summary>
    /// Carrying 3 streams, then 1, then 3 again: streams 1 and 2 of the last step start from
    /// zeros (the step before did not carry them), not from the states of two steps before.
    /// </summary>
    [SkippableTheory]
    [InlineData(CellKind.Lstm)]
    [InlineData(CellKind.Gru)]
    public void StreamsTheLastStepDidNotCarryStartFromZeros(CellKind cell)
    {
        var shape = new ModelShape(6, 7, cell, 2);
        using var backend = CreateOrSkip(shape);
        var p = TestData.RandomParameters(shape, seed: 13);
        backend.Upload(p);
        backend.ResetState();
        var rng = new Random(6);
        var settings = new StepSettings(0.05f, 1f, ClipMode.Norm, CarryState: true);
        var pd = TestData.ToDouble(p.Data);
        var state = new double[3 * shape.StateSize]; // every stream's, zeros where not carried
        var expected = new List<double>();
        foreach (int streams in new[] { 3, 1, 3 })
        {
            var batch = TestData.RandomStreamChunk(rng, streams, shape.V);
            var r = ReferenceStack.Run(pd, shape, batch, state.AsSpan(0, streams * shape.StateSize).ToArray());
            expected.Add(r.Loss);
            Array.Clear(state);
            r.FinalState.CopyTo(state, 0);
            pd = ReferenceRnn.SgdStep(pd, r.Grad, 0.05, 1, ClipMode.Norm);
            backend.Step(batch, settings);
        }
        TestData.AssertClose(Output, "losses of 3, 1 and 3 carried streams", expected.ToArray(), backend.TakeLosses(), rtol: 1e-5, atol: 1e-6);
    }

    [SkippableFact]
    public void EvaluateSumsTheLossOfEveryRealCharacterWithoutDropout()
    {
        var shape = new ModelShape(9, 13, CellKind.Lstm, 2);
        using var backend = CreateOrSkip(shape, new DropoutConfig(0.5f, 3));
        var p = TestData.RandomParameters(shape, seed: 8);
        backend.Upload(p);
        Poison(backend);
        var batch = Batch.FromEncoded(TestData.RandomNames(5, shape.V, seed: 2));
        var r = ReferenceStack.Run(TestData.ToDouble(p.Data), shape, batch);
        double sum = backend.EvaluateSum(batch);
        Output.WriteLine($"evaluate: {sum} vs reference {r.RowLoss.Sum()}");
        Assert.Equal(r.RowLoss.Sum(), sum, r.RowLoss.Sum() * 1e-5);
    }

    [SkippableFact]
    public void SavedStateRestoresARunMidWay()
    {
        var shape = new ModelShape(6, 8, CellKind.Lstm, 2);
        var drop = new DropoutConfig(0.3f, 5);
        var config = new OptimizerConfig(OptimizerKind.Adam);
        var batches = Enumerable.Range(0, 6).Select(i => Batch.FromStreams(TestData.RandomNames(3, shape.V, seed: 70 + i, 4, 4), TestData.RandomNames(3, shape.V, seed: 80 + i, 4, 4))).ToList();
        var settings = new StepSettings(0.01f, 1f, ClipMode.Norm, CarryState: true, config);
        var p0 = TestData.RandomParameters(shape, seed: 3);
        using var whole = CreateOrSkip(shape, drop);
        whole.Upload(p0);
        batches.ForEach(b => whole.Step(b, settings));
        using var first = CreateOrSkip(shape, drop);
        first.Upload(p0);
        batches.Take(3).ToList().ForEach(b => first.Step(b, settings));
        var middle = new Parameters(shape);
        first.Download(middle);
        var state = first.SaveState();
        using var second = CreateOrSkip(shape, drop);
        second.Upload(middle);
        second.LoadState(state);
        batches.Skip(3).ToList().ForEach(b => second.Step(b, settings));
        Parameters a = new(shape), b = new(shape);
        whole.Download(a);
        second.Download(b);
        Assert.Equal(a.Data, b.Data);
    }

    [SkippableTheory]
    [InlineData(CellKind.Gru)]
    [InlineData(CellKind.Lstm)]
    public void TrainingOnTheBundledNamesLowersTheLossAndRepeatsExactly(CellKind cell)
    {
        Skip.If(LongRunsLeftOut is not null, LongRunsLeftOut);
        var dataset = Dataset.Load(TestData.BundledNames);
        var vocab = Vocabulary.FromNames(dataset.Names);
        var names = dataset.Names.Select(vocab.Encode).ToList();
        var shape = new ModelShape(24, vocab.Size, cell, 2);
        float[] Train()
        {
            using var backend = CreateOrSkip(shape, new DropoutConfig(0.1f, 1));
            backend.Upload(Parameters.Initialize(shape, InitScheme.Xavier, seed: 3));
            var batcher = new Batcher(names, 16, ShuffleMode.Epoch, seed: 3);
            var settings = new StepSettings(0.01f, 5f, ClipMode.Norm, CarryState: false, new OptimizerConfig(OptimizerKind.Adam));
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

public sealed class CpuStackBackendTests(ITestOutputHelper output) : StackBackendTests(output)
{
    protected override (IBackend?, string?) Create(ModelShape shape, DropoutConfig dropout) => (new CpuStackBackend(shape, dropout, threads: 1), null);
}

public sealed class CpuStackBackendTwoThreadTests(ITestOutputHelper output) : StackBackendTests(output)
{
    protected override (IBackend?, string?) Create(ModelShape shape, DropoutConfig dropout) => (new CpuStackBackend(shape, dropout, threads: 2), null);

    [Theory]
    [InlineData(CellKind.Gru, 2, 32, 40)]
    [InlineData(CellKind.Lstm, 3, 16, 40)]
    [InlineData(CellKind.Gru, 1, 2, 200)] // fewer names than threads: the third thread must sit out
    [InlineData(CellKind.Lstm, 2, 16, 100)] // 125k parameters: the update and the weight copies are split too
    public void ResultsDoNotDependOnTheThreadCount(CellKind cell, int layers, int batch, int hidden)
    {
        // Large enough that the work is split (B·H·G·H per layer above the threshold).
        var shape = new ModelShape(hidden, 11, cell, layers);
        var drop = new DropoutConfig(0.2f, 3);
        float[] Train(int threads)
        {
            using var backend = new CpuStackBackend(shape, drop, threads);
            backend.Upload(TestData.RandomParameters(shape, seed: 9, scale: 0.2));
            var settings = new StepSettings(0.01f, 1f, ClipMode.Norm, CarryState: false, new OptimizerConfig(OptimizerKind.Adam));
            for (int i = 0; i < 3; i++)
                backend.Step(Batch.FromEncoded(TestData.RandomNames(batch, shape.V, seed: i, minLength: 1, maxLength: 9)), settings);
            Output.WriteLine(backend.Device);
            var p = new Parameters(shape);
            backend.Download(p);
            return [.. p.Data, .. backend.TakeLosses()];
        }
        var one = Train(1);
        Assert.Equal(one, Train(2));
        Assert.Equal(one, Train(3));
    }
}
