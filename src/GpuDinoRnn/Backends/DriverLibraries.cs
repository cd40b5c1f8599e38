// Where ILGPU finds the GPU drivers on Linux. It imports the CUDA driver as "cuda" and OpenCL as
// "OpenCL", which .NET looks for as libcuda.so and libOpenCL.so: unversioned names that come with
// development packages and that driver-only installs often lack. A machine with just a driver (a
// container with the driver mounted, a server without the CUDA toolkit) has libcuda.so.1 and
// libOpenCL.so.1, and ILGPU would find no GPU there. So the app lets ILGPU's imports fall back to
// the versioned names. ILGPU 1.5.3 sets no resolver of its own (its shipped assembly has no
// SetDllImportResolver call, WSL or not), so this one is set on every Linux, WSL included, where
// the driver's folder /usr/lib/wsl/lib is on the loader's path.
using System.Reflection;
using System.Runtime.InteropServices;
using ILGPU;

namespace GpuDinoRnn.Backends;

internal static class DriverLibraries
{
    private static int _registered;

    /// <summary>Once per process, before the first ILGPU context: the fallback resolver for ILGPU's imports (Linux).</summary>
    public static void Register()
    {
        if (!OperatingSystem.IsLinux() || Interlocked.Exchange(ref _registered, 1) == 1)
            return;
        try
        {
            NativeLibrary.SetDllImportResolver(typeof(Context).Assembly, Resolve);
        }
        catch (InvalidOperationException)
        {
            // A resolver is set already (a host application's, or a later ILGPU's own): leave it.
        }
    }

    /// <summary>The file names tried for one of ILGPU's imports, unversioned first; null for any other library.</summary>
    public static string[]? Candidates(string libraryName) => libraryName switch
    {
        "cuda" => ["libcuda.so", "libcuda.so.1"],
        "OpenCL" => ["libOpenCL.so", "libOpenCL.so.1"],
        _ => null,
    };

    /// <summary>The first of names the dynamic loader can open (its own search path), or Zero.</summary>
    public static IntPtr LoadFirst(IEnumerable<string> names)
    {
        foreach (var name in names)
            if (NativeLibrary.TryLoad(name, out var handle))
                return handle;
        return IntPtr.Zero;
    }

    /// <summary>Zero, for the runtime's own probing, when the library is not a driver or none of its names loads.</summary>
    private static IntPtr Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath) =>
        Candidates(libraryName) is { } names ? LoadFirst(names) : IntPtr.Zero;
}
