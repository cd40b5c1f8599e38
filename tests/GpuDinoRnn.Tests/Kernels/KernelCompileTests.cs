// CI has no GPU, but every kernel can still be compiled for CUDA (PTX for sm_90) and OpenCL
// (OpenCL C 2.0), and the OpenCL C checked by clang's OpenCL front end, so a construct only the
// CPU emulator accepts fails here rather than on a user's GPU. Debian's LLVM has no SPIR
// back end, so clang stops at LLVM IR (-emit-llvm): parsing and type checking are complete.
using System.Diagnostics;
using System.Reflection;
using GpuDinoRnn.Backends;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Tests.Reference;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.OpenCL;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Kernels;

public class KernelCompileTests(ITestOutputHelper output)
{
    public static TheoryData<string> KernelNames()
    {
        var data = new TheoryData<string>();
        foreach (var m in AllKernels())
            data.Add(Name(m));
        return data;
    }

    private static IEnumerable<MethodInfo> AllKernels() =>
        new[] { typeof(RnnKernels), typeof(LossKernels), typeof(UpdateKernels), typeof(StackKernels), typeof(SampleKernels) }
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Static))
            .Where(m => m.ReturnType == typeof(void));

    /// <summary>Kernels whose first parameter is Index1D are grouped by ILGPU; the passes choose their own groups.</summary>
    private static EntryPointDescription Entry(MethodInfo m) =>
        m.GetParameters()[0].ParameterType == typeof(Index1D)
            ? EntryPointDescription.FromImplicitlyGroupedKernel(m)
            : EntryPointDescription.FromExplicitlyGroupedKernel(m);

    private static string Name(MethodInfo m) => $"{m.DeclaringType!.Name}.{m.Name}";

    private static MethodInfo Find(string name) => AllKernels().Single(m => Name(m) == name);

    [Fact]
    public void EveryKernelIsListed()
    {
        // Vanilla: forward and backward passes, Waa's transpose, weight gradients, carry, output layer, norm partials,
        // update, batch loss. Stacks: start state, the weights' transpose, forward and backward passes, output layer,
        // input gradients, weight gradients, carry. Sampling: names drawn a thread each.
        Assert.Equal(18, AllKernels().Count());
    }

    /// <summary>
    /// Every kernel with the PTX ISA that ILGPU picks for an sm_90 GPU (H100, H200) under a CUDA
    /// 12.0 driver (ISA 8.0) and a 13.0 one, as on the H200 machines these sessions may be lent
    /// (driver 580; ILGPU 1.5.3 takes ISA 8.8 there, the newest it writes).
    /// </summary>
    public static TheoryData<string, int> KernelsAndDrivers()
    {
        var data = new TheoryData<string, int>();
        foreach (var m in AllKernels())
        {
            data.Add(Name(m), 12);
            data.Add(Name(m), 13);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(KernelsAndDrivers))]
    public void CompilesToPtx(string kernel, int cudaMajor)
    {
        var isa = CudaAccelerator.GetInstructionSet(CudaArchitecture.SM_90, CudaDriverVersion.FromMajorMinor(cudaMajor, 0));
        using var context = Context.Create(Devices.ConfigureCompiler); // the program's compiler settings
        using var backend = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90), CudaArchitecture.SM_90, isa, null);
        var compiled = (PTXCompiledKernel)backend.Compile(Entry(Find(kernel)), default);
        Assert.Contains(".entry", compiled.PTXAssembly, StringComparison.Ordinal);
        output.WriteLine($"CUDA {cudaMajor}.0 driver: PTX ISA {isa}");
        output.WriteLine(compiled.PTXAssembly[..Math.Min(400, compiled.PTXAssembly.Length)]);
        Assert.Contains($".version {isa.Major}.{isa.Minor}", compiled.PTXAssembly, StringComparison.Ordinal);
        // ILGPU writes the lowest target the PTX ISA needs (sm_80 for ISA 8.0); the driver JITs it for sm_90.
        Assert.Matches(@"\.target sm_[89]0", compiled.PTXAssembly);
        // No approximate hardware math where it would move results off the cpu backend's: ILGPU
        // turns XMath.Tanh into tanh.approx.f32 (about 2⁻¹¹ relative error) from sm_75 on.
        Assert.DoesNotContain("tanh.approx", compiled.PTXAssembly, StringComparison.Ordinal);
        // No conditional branch declared warp-uniform (bra.uni): at O2 ILGPU declared branches on
        // a thread's own index so (ILGPU #846); the level the program uses declares none.
        Assert.DoesNotMatch(@"@!?%p\d+\s+bra\.uni", compiled.PTXAssembly);
        output.WriteLine($"{kernel}: {compiled.PTXAssembly.Length} characters of PTX");
        // For a lent GPU machine, which has CUDA's ptxas but no .NET: bench/device-check.sh
        // assembles these files for sm_90 and prints each kernel's registers and spills.
        if (PtxFolder(Environment.GetEnvironmentVariable("GPUDINORNN_PTX_DIR")) is { } dir)
        {
            Directory.CreateDirectory(dir);
            File.WriteAllText(Path.Combine(dir, $"{kernel}.cuda{cudaMajor}.ptx"), compiled.PTXAssembly);
        }
    }

    /// <summary>
    /// Where GPUDINORNN_PTX_DIR asks for the PTX: a relative folder is the repository's (tests run
    /// in their bin folder, where .device/ptx would be neither found nor carried to the GPU machine).
    /// </summary>
    internal static string? PtxFolder(string? setting) =>
        string.IsNullOrEmpty(setting) ? null : Path.GetFullPath(setting, TestData.RepoRoot);

    [Fact]
    public void ARelativePtxFolderIsTheRepositorys()
    {
        Assert.Null(PtxFolder(null));
        Assert.Null(PtxFolder(""));
        Assert.Equal(Path.Combine(TestData.RepoRoot, ".device", "ptx"), PtxFolder(".device/ptx"));
        Assert.Equal("/tmp/ptx", PtxFolder("/tmp/ptx"));
    }

    [SkippableTheory]
    [MemberData(nameof(KernelNames))]
    public void CompilesToOpenClCThatClangAccepts(string kernel)
    {
        using var context = Context.Create(Devices.ConfigureCompiler);
        var caps = new CLCapabilityContext(false, false, false, false, true);
        using var backend = new CLBackend(context, caps, CLDeviceVendor.Nvidia, CLCVersion.CL20);
        var compiled = (CLCompiledKernel)backend.Compile(Entry(Find(kernel)), default);
        Assert.Contains("kernel", compiled.Source, StringComparison.Ordinal);

        string? clang = new[] { "/usr/bin/clang", "/usr/bin/clang-19", "/usr/bin/clang-16", "/usr/bin/clang-14" }.FirstOrDefault(File.Exists);
        Skip.If(clang is null, "clang is not installed (.ci/run installs it): the OpenCL C was generated but not checked");
        string dir = Directory.CreateTempSubdirectory("gpudinornn-cl").FullName;
        try
        {
            string source = Path.Combine(dir, "kernel.cl");
            File.WriteAllText(source, compiled.Source);
            var psi = new ProcessStartInfo(clang!, ["-x", "cl", "-cl-std=CL2.0", "-target", "spir64", "-Xclang", "-finclude-default-header", "-emit-llvm", "-c", source, "-o", Path.Combine(dir, "kernel.bc")])
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            using var process = Process.Start(psi)!;
            string errors = process.StandardError.ReadToEnd();
            process.WaitForExit();
            output.WriteLine($"{kernel}: clang exit {process.ExitCode}, {compiled.Source.Length} characters of OpenCL C");
            Assert.True(process.ExitCode == 0, $"clang rejected the OpenCL C of {kernel}:\n{errors}");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
