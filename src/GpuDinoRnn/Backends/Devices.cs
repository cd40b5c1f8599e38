// Finding devices and building the backend for --device. An ILGPU context is created only when
// an ILGPU device is asked for (or auto must look for GPUs), never for --device cpu.
using GpuDinoRnn.Data;
using GpuDinoRnn.Model;
using GpuDinoRnn.Sampling;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace GpuDinoRnn.Backends;

/// <param name="Id">What --device takes: cpu, ilgpu-cpu, cuda:N, opencl:N.</param>
/// <param name="Usable">Whether GpuDinoRnn can run on it; Note says why not.</param>
public sealed record DeviceInfo(string Id, string Kind, string Name, long MemoryBytes, int ComputeUnits, int WarpSize, bool Usable, string Note);

public static class Devices
{
    /// <summary>The emulated device for ilgpu-cpu: warps of 4 threads, one multiprocessor per core.</summary>
    public static CPUDevice EmulatedCpu(int threads) => new(4, 1, Math.Max(1, threads));

    /// <summary>
    /// The cpu backend as `devices` names it: the vectors its kernels use (CpuKernels.Lanes; not
    /// Vector&lt;float&gt;, which stays 256 bits on AVX-512 machines) and whether multiply-adds are fused.
    /// </summary>
    public static string CpuName =>
        $"managed SIMD ({CpuKernels.Lanes * 32}-bit vectors{(CpuKernels.FusedMultiplyAdd ? "" : ", multiply-adds not fused")})";

    /// <summary>Every device, in --device N order: cpu, then CUDA, OpenCL, and the ILGPU CPU emulator.</summary>
    public static IReadOnlyList<DeviceInfo> List(int threads)
    {
        var list = new List<DeviceInfo>
        {
            new("cpu", "cpu", CpuName, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes, CpuThreads(threads, null), 1, true, "the laptop fallback"),
        };
        using var context = CreateContext(threads, includeUnsupported: true);
        foreach (var (id, device) in IlgpuDevices(context))
        {
            var (usable, note) = Usability(device);
            list.Add(new(id, Kind(device), device.Name, device.MemorySize, device.NumMultiprocessors, device.WarpSize, usable, note));
        }
        return list;
    }

    /// <summary>
    /// The backend for a --device value: auto, cpu, ilgpu-cpu, cuda, opencl, cuda:N, opencl:N or
    /// an index from List. Throws UserError (exit 2 for a device that is absent, 3 for one that fails) naming the devices that exist.
    /// </summary>
    public static IBackend Create(string spec, ModelShape shape, int threads, Action<string>? log = null, DropoutConfig dropout = default,
        bool preciseMath = false) =>
        Open<IBackend>(spec, threads, log,
            // The course's model has its own fast backends; every other model runs the stack's.
            () => shape.IsVanilla && dropout.Rate == 0
                ? new CpuBackend(shape, CpuThreads(threads, log), preciseMath)
                : new CpuStackBackend(shape, dropout, CpuThreads(threads, log)),
            (accelerator, context) => shape.IsVanilla && dropout.Rate == 0
                ? new IlgpuBackend(accelerator, shape, ownedContext: context)
                : new IlgpuStackBackend(accelerator, shape, dropout, ownedContext: context));

    /// <summary>
    /// The cpu backend's threads for a --threads value: at most the cores .NET sees. Its threads spin
    /// between a step's phases, so threads beyond the cores only take time from those that work.
    /// The thread count never changes the results.
    /// </summary>
    public static int CpuThreads(int requested, Action<string>? log)
    {
        int cores = Environment.ProcessorCount;
        if (requested <= cores)
            return requested;
        log?.Invoke($"cpu: {requested} threads asked for, {cores} cores here: using {cores} (more threads than cores only slow the cpu backend down)");
        return cores;
    }

    /// <summary>Where `sample` draws names for a --device value: the host's cores for cpu, else a thread per name on the device.</summary>
    public static INameSampler CreateSampler(string spec, Parameters parameters, Vocabulary vocabulary, int threads, int batchSize, Action<string>? log = null) =>
        Open<INameSampler>(spec, threads, log,
            () => new HostNameSampler(parameters, vocabulary),
            (accelerator, context) => new IlgpuSampler(accelerator, parameters, vocabulary, batchSize, context));

    /// <summary>
    /// The id a --device value names, as `devices` lists it: "cpu", "cuda:0", …; auto without a GPU is
    /// cpu. For bench, which must not time one device twice under two names.
    /// </summary>
    public static string Resolve(string spec, int threads)
    {
        spec = Canonical(spec, threads);
        if (spec == "cpu")
            return spec;
        using var context = CreateContext(threads, includeUnsupported: false);
        return Pick(spec, IlgpuDevices(context).ToList())?.Id ?? (spec == "auto" ? "cpu" : throw Absent($"device '{spec}'", List(threads)));
    }

    /// <summary>A --device value trimmed and lower-cased, an index replaced by the id it stands for.</summary>
    private static string Canonical(string spec, int threads)
    {
        spec = spec.Trim().ToLowerInvariant();
        if (!int.TryParse(spec, out int index))
            return spec;
        var all = List(threads);
        if (index < 0 || index >= all.Count)
            throw Absent($"device {index}", all);
        return all[index].Id;
    }

    /// <summary>The usable device a canonical --device value other than cpu picks, or null.</summary>
    private static (string Id, Device Device)? Pick(string spec, List<(string Id, Device Device)> found) => spec switch
    {
        "auto" => found.FirstOrDefault(f => f.Device.AcceleratorType == AcceleratorType.Cuda) is { Device: not null } c ? c
            : found.FirstOrDefault(f => IsOpenClGpu(f.Device)) is { Device: not null } o ? o : null,
        "cuda" or "opencl" => found.FirstOrDefault(f => f.Id.StartsWith(spec + ":", StringComparison.Ordinal)) is { Device: not null } k ? k : null,
        _ => found.FirstOrDefault(f => f.Id == spec) is { Device: not null } e ? e : null,
    };

    /// <summary>Resolves a --device value and builds onCpu() or onDevice(accelerator, context) for it.</summary>
    private static T Open<T>(string spec, int threads, Action<string>? log, Func<T> onCpu, Func<Accelerator, Context, T> onDevice)
    {
        spec = Canonical(spec, threads);
        if (spec == "cpu")
            return onCpu();
        var context = CreateContext(threads, includeUnsupported: false);
        try
        {
            var pick = Pick(spec, IlgpuDevices(context).ToList());
            if (pick is null)
            {
                context.Dispose();
                if (spec == "auto")
                {
                    log?.Invoke("device auto: no CUDA or OpenCL GPU found, using cpu");
                    return onCpu();
                }
                throw Absent($"device '{spec}'", List(threads));
            }
            var (id, device) = pick.Value;
            if (spec == "auto")
                log?.Invoke($"device auto: using {id} ({device.Name})");
            Accelerator accelerator;
            try
            {
                accelerator = device.CreateAccelerator(context);
            }
            catch (Exception e) when (e is not UserError)
            {
                throw new UserError($"device {id} ({device.Name}) could not be started: {e.Message}; try --device cpu", UserError.DeviceError);
            }
            return CompileOrExplain(id, device.Name, () => onDevice(accelerator, context), accelerator.Dispose);
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Whether e is an error a device reported while it ran: a kernel's illegal address (a fault
    /// of the device's or a bug in a kernel), a launch it refused, a device lost to a driver
    /// reset. The run cannot go on there; GPUDINORNN_TRACE=1 prints the whole exception.
    /// </summary>
    public static bool Failed(Exception e) => e is AcceleratorException;

    /// <summary>What a failed device said, on one line.</summary>
    public static string Reason(Exception e) => e.Message.ReplaceLineEndings(" ").Trim();

    /// <summary>
    /// Builds the backend (which compiles every kernel); a failure names the device and
    /// suggests the cpu backend instead of showing the compiler's trace.
    /// </summary>
    internal static T CompileOrExplain<T>(string id, string name, Func<T> build, Action cleanUp)
    {
        try
        {
            return build();
        }
        catch (Exception e) when (e is not UserError)
        {
            cleanUp();
            string reason = e.Message.ReplaceLineEndings(" ");
            throw new UserError($"the kernels failed to compile for {id} ({name}): {reason}; try --device cpu", UserError.DeviceError);
        }
    }

    /// <summary>A context for every device (the compile tests build theirs with the same settings).</summary>
    public static Context CreateContext(int threads, bool includeUnsupported)
    {
        DriverLibraries.Register();
        return Context.Create(b =>
        {
            if (includeUnsupported)
                b.Cuda(_ => true).OpenCL(_ => true);
            else
                b.Cuda().OpenCL();
            b.CPU(EmulatedCpu(threads));
            ConfigureCompiler(b);
        });
    }

    /// <summary>
    /// Algorithms enabled (XMath on every backend), at ILGPU's default optimisation level. Not O2:
    /// its uniformity analysis takes an implicitly grouped kernel's index for the same on every
    /// thread, and so marks branches on it as warp-uniform (`bra.uni`) in PTX, which a warp that
    /// does diverge there need not survive (ILGPU issue #846: illegal memory accesses at O2 only).
    /// </summary>
    internal static void ConfigureCompiler(Context.Builder b) => b.EnableAlgorithms();

    private static IEnumerable<(string Id, Device Device)> IlgpuDevices(Context context)
    {
        int cuda = 0, opencl = 0;
        foreach (var device in context)
        {
            switch (device.AcceleratorType)
            {
                case AcceleratorType.Cuda:
                    yield return ($"cuda:{cuda++}", device);
                    break;
                case AcceleratorType.OpenCL:
                    yield return ($"opencl:{opencl++}", device);
                    break;
                case AcceleratorType.CPU:
                    yield return ("ilgpu-cpu", device);
                    break;
            }
        }
    }

    private static string Kind(Device device) => device switch
    {
        CudaDevice => "cuda",
        CLDevice cl => $"opencl {cl.DeviceType.ToString().ToLowerInvariant()}",
        _ => "ilgpu-cpu",
    };

    private static bool IsOpenClGpu(Device device) =>
        device is CLDevice cl && cl.DeviceType == CLDeviceType.CL_DEVICE_TYPE_GPU && Usability(device).Usable;

    private static (bool Usable, string Note) Usability(Device device) => device switch
    {
        CLDevice cl when !cl.Capabilities.GenericAddressSpace => (false, "no OpenCL generic address space, which ILGPU needs"),
        CLDevice => (true, "OpenCL"),
        CudaDevice cuda => CudaUsability(cuda.Architecture, cuda.InstructionSet, cuda.DriverVersion),
        _ => (true, "GPU kernels emulated on the CPU: slow, for testing"),
    };

    /// <summary>
    /// Whether ILGPU can compile for a CUDA GPU: the test its Cuda() makes (a known architecture and
    /// a PTX ISA it can write for that architecture under this driver). `devices` lists every GPU,
    /// and one that fails says why here instead of showing as usable and then not being found.
    /// </summary>
    internal static (bool Usable, string Note) CudaUsability(CudaArchitecture? architecture, CudaInstructionSet? isa, CudaDriverVersion driver) =>
        architecture is null ? (false, $"an architecture ILGPU 1.5.3 does not know (CUDA driver {driver})")
        : isa is { } set && PTXCodeGenerator.SupportedInstructionSets.Contains(set) ? (true, $"CUDA, {architecture}, PTX ISA {set}")
        : (false, $"ILGPU 1.5.3 has no PTX ISA for {architecture} under CUDA driver {driver}");

    private static UserError Absent(string what, IReadOnlyList<DeviceInfo> all) =>
        new($"{what} is not present; devices here: {string.Join(", ", all.Select(d => d.Usable ? d.Id : $"{d.Id} (unusable)"))}", UserError.BadInput);
}
