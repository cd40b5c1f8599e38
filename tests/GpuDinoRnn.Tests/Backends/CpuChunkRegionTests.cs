// With several chunks the cpu backend keeps each chunk's rows in a region of its own, at the same
// place whatever the batch (so a thread's rows stay in its cache). The region grows when a chunk
// is longer than any before; rows left from a longer batch must never leak into a shorter one.
using GpuDinoRnn.Backends;
using GpuDinoRnn.Data;
using GpuDinoRnn.Model;
using GpuDinoRnn.Tests.Reference;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Backends;

public sealed class CpuChunkRegionTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void RegionsThatGrowKeepEveryGradientRight(int threads)
    {
        // H 64: 32 names are worth a second thread (and so is each batch below).
        var shape = new ModelShape(64, 27);
        var p = TestData.RandomParameters(shape, seed: 3, scale: 0.2);
        Batch Names(int n, int seed, int min, int max) => Batch.FromEncoded(TestData.RandomNames(n, shape.V, seed, min, max));
        var batches = new[]
        {
            ("32 short names", Names(32, 1, 1, 3)),
            ("32 long names", Names(32, 2, 12, 30)), // chunks far longer than before: the regions grow
            ("32 short names again", Names(32, 3, 1, 4)), // rows the long batch left beyond these names
            ("48 names", Names(48, 4, 1, 12)),
            ("64 names, each chunk longer still", Names(64, 5, 20, 40)),
        };
        using var backend = new CpuBackend(shape, threads);
        backend.Upload(p);
        var strides = new List<int>();
        foreach (var (what, batch) in batches)
        {
            var grad = new float[shape.ParameterCount];
            float loss = backend.Gradients(batch, carryState: false, grad);
            output.WriteLine($"{what}: {batch.Chars} characters, regions of {backend.ChunkStride} rows");
            TestData.AssertGradientsMatch(output, shape, ReferenceRnn.Run(TestData.ToDouble(p.Data), shape.H, shape.V, batch), loss, grad);
            Assert.Equal(0, backend.ChunkStride % 16);
            int chunks = backend.ChunkRows.Length;
            Assert.Equal(Enumerable.Range(0, chunks).Select(c => c * backend.ChunkStride), backend.ChunkRows);
            strides.Add(backend.ChunkStride);
            // The same bits as a backend that never saw another batch.
            using var fresh = new CpuBackend(shape, threads);
            fresh.Upload(p);
            var freshGrad = new float[shape.ParameterCount];
            Assert.Equal(fresh.Gradients(batch, carryState: false, freshGrad), loss);
            Assert.Equal(freshGrad, grad);
        }
        Assert.True(strides[1] > strides[0], "a longer chunk grows the regions");
        Assert.Equal(strides[1], strides[2]); // a shorter batch does not move them back
        Assert.True(strides[4] > strides[3], "and they grow again");
        Assert.Equal(threads, backend.Replicas); // two threads did run chunks side by side
    }

    /// <summary>Carried states are read from each chunk's region: every stream's last row.</summary>
    [Fact]
    public void CarriedStatesComeFromEachChunksRegion()
    {
        var shape = new ModelShape(9, 7);
        using var backend = new CpuBackend(shape, threads: 1);
        var p = TestData.RandomParameters(shape, seed: 14);
        backend.Upload(p);
        var settings = new StepSettings(0.05f, 1f, ClipMode.Norm, CarryState: true);
        var pd = TestData.ToDouble(p.Data);
        double[]? state = null;
        var expected = new List<double>();
        var rng = new Random(7);
        // 3 chunks, 3 longer ones (the regions grow), 2, then 3 shorter: the regions stay where they are.
        foreach (var (names, length) in new[] { (48, 4), (48, 9), (32, 3), (48, 6) })
        {
            int[][] Symbols() => Enumerable.Range(0, names).Select(_ => Enumerable.Range(0, length).Select(_ => rng.Next(shape.V)).ToArray()).ToArray();
            var batch = Batch.FromStreams(Symbols(), Symbols());
            // Streams the last step did not carry start from zeros.
            var start = new double[names * shape.H];
            state?.AsSpan(0, Math.Min(state.Length, start.Length)).CopyTo(start);
            var r = ReferenceRnn.Run(pd, shape.H, shape.V, batch, start);
            expected.Add(r.Loss);
            state = r.A.AsSpan(batch.T * batch.B * shape.H, batch.B * shape.H).ToArray();
            pd = ReferenceRnn.SgdStep(pd, r.Grad, 0.05, 1, ClipMode.Norm);
            backend.Step(batch, settings);
        }
        TestData.AssertClose(output, "losses of streams carried through 3, 3, 2 and 3 chunks", expected.ToArray(), backend.TakeLosses(), rtol: 1e-5, atol: 1e-6);
    }
}
