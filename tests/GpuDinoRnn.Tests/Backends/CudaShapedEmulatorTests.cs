// Both ILGPU suites on a CPU emulator shaped like a CUDA GPU. The `ilgpu-cpu` device (and the other
// emulator tests) use warps of 4 threads and groups of 4, so a pass's group never has more than
// one warp, and threads past the last unit only where H < 4. On CUDA it has both: H rounded up
// to warps of 32 (H 5: 27 idle threads that must still meet every barrier; H 33: two warps). This emulator has
// warps of 32 and groups of up to 64 threads (2 warps, one group at a time: the emulator runs
// every thread of a group as an OS thread, so 1024 would be slow), and the backend is given
// CUDA's 48 KB of shared memory per group, so Waa goes to shared memory exactly where it would there.
// The suites' minutes-long runs are left out here: the 4-thread emulator and cpu run them.
using GpuDinoRnn.Backends;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Backends;

internal static class CudaShapedEmulator
{
    public const int WarpSize = 32;
    public const int MaxGroup = 64;
    public const long SharedMemoryBytes = 48 * 1024; // what ILGPU asks CUDA for
    public const string LongRunsLeftOut = "a minutes-long run on this emulator (its groups' threads are OS threads); the ilgpu-cpu and cpu suites run it";

    public static (Context Context, Accelerator Accelerator) Create()
    {
        var context = Context.Create(b =>
        {
            b.CPU(new CPUDevice(WarpSize, MaxGroup / WarpSize, 1));
            Devices.ConfigureCompiler(b); // the program's compiler settings
        });
        return (context, context.GetCPUDevice(0).CreateAccelerator(context));
    }
}

public sealed class IlgpuCpuCudaShapedBackendTests(ITestOutputHelper output) : BackendTests(output)
{
    protected override (IBackend?, string?) Create(ModelShape shape)
    {
        var (context, acc) = CudaShapedEmulator.Create();
        return (new IlgpuBackend(acc, shape, CudaShapedEmulator.SharedMemoryBytes, ownedContext: context), null);
    }

    protected override string? LongRunsLeftOut => CudaShapedEmulator.LongRunsLeftOut;

    [Theory]
    [InlineData(5, 32, false)]
    [InlineData(33, 64, false)]
    [InlineData(110, 64, false)]
    [InlineData(111, 64, true)]
    [InlineData(1024, 64, true)]
    public void GroupsAreShapedAsOnCuda(int h, int group, bool waaInGlobalMemory)
    {
        using var backend = (IlgpuBackend)Create(new ModelShape(h, 27)).Item1!;
        Assert.Equal(group, backend.PassGroupSize);
        Assert.Equal(32, backend.OutputGroupSize); // V 27: 5 idle threads
        Assert.Equal(waaInGlobalMemory, !backend.WaaShared);
    }
}

public sealed class IlgpuStackCpuCudaShapedBackendTests(ITestOutputHelper output) : StackBackendTests(output)
{
    protected override (IBackend?, string?) Create(ModelShape shape, DropoutConfig dropout)
    {
        var (context, acc) = CudaShapedEmulator.Create();
        return (new IlgpuStackBackend(acc, shape, dropout, ownedContext: context), null);
    }

    protected override string? LongRunsLeftOut => CudaShapedEmulator.LongRunsLeftOut;

    [Theory]
    [InlineData(1, 32)]
    [InlineData(40, 64)]
    [InlineData(1024, 64)]
    public void GroupsAreShapedAsOnCuda(int h, int group)
    {
        using var backend = (IlgpuStackBackend)Create(new ModelShape(h, 27, CellKind.Gru), default).Item1!;
        Assert.Equal(group, backend.PassGroupSize);
        Assert.Equal(32, backend.OutputGroupSize);
    }
}
