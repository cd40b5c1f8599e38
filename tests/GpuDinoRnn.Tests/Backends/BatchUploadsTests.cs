// The ring of page-locked buffers each step's ids go through: every batch arrives whole, and
// nothing else moves, whichever slot it takes and however often the slots grow; the host waits
// for the device only when the ring comes round or grows. (ILGPU's CPU accelerator copies at
// once, so these tests check the ring's bookkeeping, not a GPU's timing.)
using GpuDinoRnn.Backends;
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;
using GpuDinoRnn.Tests.Reference;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;

namespace GpuDinoRnn.Tests.Backends;

public sealed class BatchUploadsTests
{
    private const int Capacity = 200;

    /// <summary>ILGPU's CPU accelerator, two id buffers of Capacity and the ring under test.</summary>
    private sealed class Rig : IDisposable
    {
        private readonly Context _context = Devices.CreateContext(threads: 1, includeUnsupported: false);

        public Rig()
        {
            Acc = _context.GetCPUDevice(0).CreateAccelerator(_context);
            var memory = new DeviceMemory(Acc);
            X = memory.Allocate<int>(Capacity, "test");
            Y = memory.Allocate<int>(Capacity, "test");
            Uploads = new BatchUploads(Acc);
        }

        public Accelerator Acc { get; }
        public MemoryBuffer1D<int, Stride1D.Dense> X { get; }
        public MemoryBuffer1D<int, Stride1D.Dense> Y { get; }
        public BatchUploads Uploads { get; }

        public void Dispose()
        {
            Uploads.Dispose();
            X.Dispose();
            Y.Dispose();
            Acc.Dispose();
            _context.Dispose();
        }
    }

    [Fact]
    public void EachBatchArrivesWholeAndNothingElseMovesWhileTheRingGoesRoundAndGrows()
    {
        using var rig = new Rig();
        var (acc, x, y, uploads) = (rig.Acc, rig.X, rig.Y, rig.Uploads);
        var expectedX = Enumerable.Repeat(int.MinValue, Capacity).ToArray(); // the poison new buffers hold
        var expectedY = (int[])expectedX.Clone();
        // A batch of no ids first (streams of length 0): nothing to send, and the slots are made.
        uploads.Upload(Batch.FromStreams([[]], [[]]), x.View, y.View);
        var rng = new Random(5);
        // Small batches, then a larger one mid-ring (the slots grow), then small ones again.
        int[] names = [3, 2, 4, 3, 9, 2, 3, 5, 2, 3, 4, 2, 3, 12, 3, 2, 4, 3, 2, 5, 3, 2, 4, 3, 2, 3];
        foreach (int b in names)
        {
            var batch = Batch.FromEncoded(TestData.RandomNames(b, 6, rng.Next(), maxLength: 7));
            uploads.Upload(batch, x.View, y.View);
            batch.X.CopyTo(expectedX, 0);
            batch.Y.CopyTo(expectedY, 0);
            acc.Synchronize();
            Assert.Equal(expectedX, x.GetAsArray1D());
            Assert.Equal(expectedY, y.GetAsArray1D());
        }
    }

    [Fact]
    public void TheHostWaitsForTheDeviceOnlyWhenTheRingComesRoundOrTheSlotsGrow()
    {
        using var rig = new Rig();
        var (x, y, uploads) = (rig.X, rig.Y, rig.Uploads);
        var small = Batch.FromEncoded([[1, 2], [3]]);
        var large = Batch.FromEncoded([[1, 2, 3, 4], [3, 4], [5]]);
        var waits = new List<int>();
        // 0: the first (slots made); 8 and 16: the ring comes round; 20: the slots grow (and the
        // ring starts again there); 28: round again.
        for (int step = 0; step < 30; step++)
        {
            uploads.Upload(step >= 20 ? large : small, x.View, y.View);
            waits.Add(uploads.Waits);
        }
        int[] waitedAt = Enumerable.Range(0, 30).Where(s => waits[s] > (s == 0 ? 0 : waits[s - 1])).ToArray();
        Assert.Equal([0, BatchUploads.Slots, 2 * BatchUploads.Slots, 20, 20 + BatchUploads.Slots], waitedAt);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TrainingStepsWaitForTheDeviceOncePerRoundOfTheRing(bool stack)
    {
        var shape = stack ? new ModelShape(6, 6, CellKind.Gru, 1) : new ModelShape(6, 6);
        using var backend = Devices.Create("ilgpu-cpu", shape, threads: 1);
        backend.Upload(TestData.RandomParameters(shape, 1));
        var batch = Batch.FromEncoded(TestData.RandomNames(4, 6, 2));
        for (int step = 0; step < 2 * BatchUploads.Slots + 1; step++)
            backend.Step(batch, new StepSettings(0.1f, 1f, ClipMode.Norm, CarryState: false));
        int waits = backend switch
        {
            IlgpuBackend vanilla => vanilla.UploadWaits,
            IlgpuStackBackend layers => layers.UploadWaits,
            _ => throw new InvalidOperationException($"not an ILGPU backend: {backend.GetType().Name}"),
        };
        Assert.Equal(3, waits);
        Assert.All(backend.TakeLosses(), loss => Assert.True(float.IsFinite(loss)));
    }
}
