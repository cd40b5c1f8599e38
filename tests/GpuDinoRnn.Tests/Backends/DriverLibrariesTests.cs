// The fallback that lets ILGPU find a GPU driver installed without its unversioned names
// (libcuda.so.1 but no libcuda.so). No driver here, so the loading is checked with a library
// every Linux machine has.
using System.Runtime.InteropServices;
using GpuDinoRnn.Backends;
using ILGPU;

namespace GpuDinoRnn.Tests.Backends;

public sealed class DriverLibrariesTests
{
    [Fact]
    public void OnlyTheDriversGetFallbackNamesUnversionedFirst()
    {
        Assert.Equal(["libcuda.so", "libcuda.so.1"], DriverLibraries.Candidates("cuda")!);
        Assert.Equal(["libOpenCL.so", "libOpenCL.so.1"], DriverLibraries.Candidates("OpenCL")!);
        Assert.Null(DriverLibraries.Candidates("libc"));
    }

    [SkippableFact]
    public void TheFirstNameThatLoadsWins()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "the fallback names are Linux sonames");
        Assert.Equal(IntPtr.Zero, DriverLibraries.LoadFirst(["libgpudinornn-absent.so", "libgpudinornn-absent.so.1"]));
        IntPtr libm = DriverLibraries.LoadFirst(["libgpudinornn-absent.so", "libm.so.6"]);
        Assert.NotEqual(IntPtr.Zero, libm);
        Assert.NotEqual(IntPtr.Zero, NativeLibrary.GetExport(libm, "cos"));
    }

    [SkippableFact]
    public void CreatingAContextSetsTheResolverForIlgpu()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "the resolver is set on Linux only");
        Devices.CreateContext(threads: 1, includeUnsupported: false).Dispose();
        // Only one resolver per assembly: a second one is refused because ours is there.
        Assert.Throws<InvalidOperationException>(() => NativeLibrary.SetDllImportResolver(typeof(Context).Assembly, (_, _, _) => IntPtr.Zero));
    }
}
