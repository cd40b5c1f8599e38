// The backend suite's key check (loss and every gradient against the float64 reference) on
// hidden sizes that hit every remainder of the cpu backend's padding and tiles, and on batch
// sizes from one name to more names than a tile of rows, with one thread and with two.
using GpuDinoRnn.Backends;
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;
using GpuDinoRnn.Tests.Reference;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Backends;

public sealed class CpuBackendShapeTests(ITestOutputHelper output)
{
    public static TheoryData<int, int, int> Shapes()
    {
        var data = new TheoryData<int, int, int>();
        foreach (int h in new[] { 1, 7, 16, 50, 130 })
            foreach (int b in new[] { 1, 5, 64 })
                data.Add(h, b, 1 + (h + b) % 2); // threads: both counts across the grid
        data.Add(50, 64, 2);
        data.Add(130, 64, 2);
        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void LossAndEveryGradientMatchTheReference(int h, int names, int threads)
    {
        const int v = 27;
        var shape = new ModelShape(h, v);
        using var backend = new CpuBackend(shape, threads);
        // Weights shrink like 1/√H: at 0.5 for every H, H = 130's gradients explode through time
        // and float32 (this backend's and the GPU kernels' alike) is 1e-3 off the float64 reference.
        var p = TestData.RandomParameters(shape, seed: h + names, scale: Math.Min(0.5, 2.5 / Math.Sqrt(h)));
        backend.Upload(p);
        var batch = Batch.FromEncoded(TestData.RandomNames(names, v, seed: names + 1, minLength: 1, maxLength: 12));
        var grad = new float[shape.ParameterCount];
        float loss = backend.Gradients(batch, carryState: false, grad);

        output.WriteLine($"H {h}, B {names}, {backend.Device}");
        TestData.AssertGradientsMatch(output, shape, ReferenceRnn.Run(TestData.ToDouble(p.Data), h, v, batch), loss, grad);
    }

    /// <summary>
    /// 64 names are four chunks (one thread runs them all; with more, each takes the next one left),
    /// 20 names two chunks (the third thread sits out), 12 names one chunk split phase by phase,
    /// 2 names too (fewer names than threads). With several chunks each thread also updates its
    /// own replica of the weights (the moments too, with Adam) and copies; with one chunk the
    /// threads share the update and the copies.
    /// </summary>
    [Theory]
    [InlineData(64, OptimizerKind.Sgd, ClipMode.Norm)]
    [InlineData(64, OptimizerKind.Adam, ClipMode.Norm)]
    [InlineData(20, OptimizerKind.Sgd, ClipMode.Value)]
    [InlineData(20, OptimizerKind.Adam, ClipMode.Norm)]
    [InlineData(12, OptimizerKind.Sgd, ClipMode.Norm)]
    [InlineData(2, OptimizerKind.Sgd, ClipMode.Norm)]
    public void OneTwoAndThreeThreadsGiveTheSameBits(int names, OptimizerKind kind, ClipMode clip)
    {
        // H large enough that the threads are used at all.
        var shape = new ModelShape(names == 64 ? 50 : names == 2 ? 300 : 130, 27);
        var p = TestData.RandomParameters(shape, seed: 3, scale: 0.2);
        var batch = Batch.FromEncoded(TestData.RandomNames(names, shape.V, seed: 7, minLength: 1, maxLength: 12));
        float[] Run(int threads)
        {
            using var backend = new CpuBackend(shape, threads);
            backend.Upload(p);
            for (int i = 0; i < 3; i++)
                backend.Step(batch, new StepSettings(0.05f, 1f, clip, CarryState: false, new OptimizerConfig(kind)));
            var after = new Parameters(shape);
            backend.Download(after);
            return [.. after.Data, .. backend.TakeLosses()];
        }
        var one = Run(1);
        Assert.Equal(one, Run(2));
        Assert.Equal(one, Run(3));
    }

    /// <summary>
    /// Evaluation sums (bits per char, --keep-best, --patience) have the same bits on 1 and 2
    /// threads over many batches: with the output rows split among threads a thread's last call
    /// of logs could get 1 to 3 rows, and those were taken one by one with other bits.
    /// </summary>
    [Theory]
    [InlineData(CellKind.Rnn, 300, 10)] // one chunk, split phase by phase
    [InlineData(CellKind.Gru, 64, 32)]  // the stack backend's output layer
    public void EvaluationSumsDoNotDependOnTheThreadCount(CellKind cell, int h, int names)
    {
        var shape = new ModelShape(h, 27, cell);
        var p = TestData.RandomParameters(shape, seed: 4, scale: 0.3);
        IBackend Create(int threads) => cell == CellKind.Rnn
            ? new CpuBackend(shape, threads)
            : new CpuStackBackend(shape, default, threads);
        using var one = Create(1);
        using var two = Create(2);
        one.Upload(p);
        two.Upload(p);
        // Batches whose rows leave 1 to 3 over a block of 64 on one thread or on one of two.
        static bool SmallTail(int rows) => rows % 64 is >= 1 and <= 3;
        int differ = 0, batches = 0;
        for (int seed = 1000; batches < 400; seed++)
        {
            var batch = Batch.FromEncoded(TestData.RandomNames(names, shape.V, seed, minLength: 1, maxLength: 13));
            if (!SmallTail(batch.Chars) && !SmallTail(batch.Chars / 2) && !SmallTail(batch.Chars - batch.Chars / 2))
                continue;
            batches++;
            if (BitConverter.DoubleToInt64Bits(one.EvaluateSum(batch)) != BitConverter.DoubleToInt64Bits(two.EvaluateSum(batch)))
                differ++;
        }
        Assert.True(differ == 0, $"{differ} of {batches} batches: the evaluation sum on 2 threads differs from 1 thread's");
    }

    /// <summary>
    /// With several threads on several chunks each thread updates its own replica of the weights,
    /// moments and copies. A session that changes them every way there is — steps on batches run
    /// by 3, 2 and 1 threads in turn (a replica left out must catch up before it is used again),
    /// an upload, a loaded optimizer state, gradients and an evaluation — keeps every replica in
    /// use equal to the first after each change, and gives the same bits on 1, 2 and 3 threads.
    /// </summary>
    [Fact]
    public void ReplicasKeepEveryThreadCountToTheSameBits()
    {
        // H 64: 32 names are worth a second thread, 5 are not, on every vector width.
        var shape = new ModelShape(64, 27);
        var p = TestData.RandomParameters(shape, seed: 5, scale: 0.2);
        var q = TestData.RandomParameters(shape, seed: 6, scale: 0.2);
        var broken = TestData.RandomParameters(shape, seed: 7, scale: 0.2);
        broken.Data[^1] = float.NaN; // by[V − 1]: a NaN loss and gradient, so the step is not applied
        // by[k] = −3e38 for k ≥ 1: a name's loss near 3e38, their mean beyond float (+∞), while the
        // gradient stays finite; a step whose loss is not finite is not applied either.
        var overflowing = TestData.RandomParameters(shape, seed: 8, scale: 0.2);
        overflowing.Data.AsSpan(overflowing.Data.Length - shape.V + 1).Fill(-3e38f);
        Batch Names(int n, int seed) => Batch.FromEncoded(TestData.RandomNames(n, shape.V, seed: seed, minLength: 1, maxLength: 12));
        var three = Names(48, 1); // 3 chunks: up to 3 threads
        var two = Names(32, 2);   // 2 chunks: up to 2
        var one = Names(5, 3);    // 1 chunk, and too little work to wake a second thread
        var settings = new StepSettings(0.05f, 1f, ClipMode.Norm, CarryState: false, new OptimizerConfig(OptimizerKind.Adam));
        var carrying = settings with { CarryState = true };
        List<float> Run(int threads)
        {
            using var backend = new CpuBackend(shape, threads);
            var seen = new List<float>();
            void Check(string after) => Assert.True(backend.ReplicasAgree(), $"{threads} threads: a replica in use differs after {after}");
            void Step(Batch b, string name, bool carry = false)
            {
                backend.Step(b, carry ? carrying : settings);
                seen.Add(backend.LastGradientNorm());
                Check($"a step on {name}");
            }
            backend.Upload(p);
            Check("the upload");
            Step(three, "48 names");
            Step(two, "32 names"); // replica 2 left out
            Step(three, "48 names");
            Step(one, "5 names");  // only replica 0 updated
            Step(two, "32 names");
            var saved = backend.SaveState();
            Step(three, "48 names");
            backend.Upload(q);
            Check("an upload");
            Step(two, "32 names");
            backend.LoadState(saved);
            Check("loading a state");
            Step(three, "48 names", carry: true);
            Step(three, "48 names", carry: true);
            backend.Upload(broken);
            Step(two, "32 names and a NaN weight");
            Step(three, "48 names and a NaN weight");
            var kept = new Parameters(shape);
            backend.Download(kept);
            Assert.Equal(broken.Data, kept.Data); // not applied
            backend.Upload(overflowing);
            Step(two, "32 names and a loss beyond float");
            Step(three, "48 names and a loss beyond float");
            backend.Download(kept);
            Assert.Equal(overflowing.Data, kept.Data);
            backend.Upload(p);
            Step(three, "48 names");
            var g = new float[shape.ParameterCount];
            seen.Add(backend.Gradients(two, carryState: false, g));
            seen.AddRange(g);
            seen.Add((float)backend.EvaluateSum(three));
            var after = new Parameters(shape);
            backend.Download(after);
            seen.AddRange(after.Data);
            var state = backend.SaveState();
            seen.AddRange(state.M);
            seen.AddRange(state.V);
            seen.AddRange(backend.TakeLosses());
            Assert.Equal(Math.Min(threads, 3), backend.Replicas);
            return seen;
        }
        var reference = Run(1);
        Assert.Equal(reference, Run(2));
        Assert.Equal(reference, Run(3));
    }
}
