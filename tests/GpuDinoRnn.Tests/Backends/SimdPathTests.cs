// CI runs the cpu backend's tests a second and third time with AVX-512 and then AVX2 switched
// off (.ci/run), so the Vector256 and Vector128 paths are exercised too; this checks that the
// switches really reach the runtime, and prints which path a run took.
using System.Runtime.Intrinsics;
using GpuDinoRnn.Backends;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Backends;

public class SimdPathTests(ITestOutputHelper output)
{
    [Fact]
    public void TheCpuKernelsRunOnTheWidestVectorsTheRuntimeAllows()
    {
        output.WriteLine($"Vector512 {Vector512.IsHardwareAccelerated}, Vector256 {Vector256.IsHardwareAccelerated}, Vector128 {Vector128.IsHardwareAccelerated}");
        // .NET 10 reads DOTNET_EnableAVX512; the older DOTNET_EnableAVX512F no longer switches Vector512 off.
        if (Environment.GetEnvironmentVariable("DOTNET_EnableAVX512") == "0")
            Assert.False(Vector512.IsHardwareAccelerated, "AVX-512 was switched off, yet Vector512 is accelerated: the narrower path is not tested");
        if (Environment.GetEnvironmentVariable("DOTNET_EnableAVX2") == "0")
            Assert.False(Vector256.IsHardwareAccelerated, "AVX2 was switched off, yet Vector256 is accelerated: the Vector128 path is not tested");
        Assert.True(Vector128.IsHardwareAccelerated);
    }

    [Fact]
    public void TheDeviceListNamesTheVectorsTheKernelsUse()
    {
        int bits = Vector512.IsHardwareAccelerated ? 512 : Vector256.IsHardwareAccelerated ? 256 : 128;
        var cpu = Devices.List(1)[0];
        output.WriteLine(cpu.Name);
        Assert.Equal("cpu", cpu.Id);
        Assert.Contains($"({bits}-bit vectors", cpu.Name);
    }
}
