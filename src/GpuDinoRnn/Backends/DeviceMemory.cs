// Device memory for the ILGPU backends and the device sampler: one place that counts what was
// allocated and turns running out of memory into an error naming the size asked for and what
// the device has.
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace GpuDinoRnn.Backends;

internal sealed class DeviceMemory(Accelerator accelerator)
{
    /// <summary>Bytes allocated so far (buffers grow only for a longer batch).</summary>
    public long Bytes { get; private set; }

    /// <summary>
    /// For tests, set before any allocation: every new float buffer starts as NaN and every int
    /// buffer (symbol ids, lengths) as int.MinValue. A GPU's fresh memory holds whatever was there
    /// (ILGPU's CPU accelerator hands out zeros, a valid id), so a kernel that reads an element
    /// nothing wrote, even to multiply it by zero, fails the tests.
    /// </summary>
    internal static bool PoisonNewBuffers { get; set; }

    /// <summary>How logs name the device: "cuda (NVIDIA H200)", "opencl (…)", "ilgpu-cpu (CPUAccelerator)".</summary>
    public static string Name(Accelerator accelerator) => $"{accelerator.AcceleratorType switch
    {
        AcceleratorType.Cuda => "cuda",
        AcceleratorType.OpenCL => "opencl",
        _ => "ilgpu-cpu",
    }} ({accelerator.Name})";

    /// <summary>
    /// Rows of room for a batch of `rows` when `current` are too few: twice the current, so that
    /// batches that grow a little at a time reallocate rarely, but never more than the 32-bit
    /// kernels can index in a buffer of elementsPerRow elements a row (doubling must not refuse
    /// a batch that fits by itself), and never fewer than the batch needs.
    /// </summary>
    public static int GrownRows(int rows, int current, long elementsPerRow) =>
        (int)Math.Max(rows, Math.Min(2L * current, int.MaxValue / Math.Max(1, elementsPerRow)));

    /// <param name="length">Elements.</param>
    /// <param name="hint">What the user can make smaller, e.g. "--hidden or --batch".</param>
    public MemoryBuffer1D<T, Stride1D.Dense> Allocate<T>(long length, string hint)
        where T : unmanaged
    {
        if (length > int.MaxValue)
            throw new UserError(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{Name(accelerator)}: a buffer of {length:N0} elements is too large: the kernels index with 32-bit integers " +
                $"(at most {int.MaxValue:N0}); try a smaller {hint}"), UserError.DeviceError);
        try
        {
            var buffer = accelerator.Allocate1D<T>(length);
            Bytes += buffer.LengthInBytes;
            if (PoisonNewBuffers)
                Poison(buffer);
            return buffer;
        }
        catch (Exception e) when (e is OutOfMemoryException or ArgumentOutOfRangeException || OutOfMemory(e))
        {
            long bytes = length * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
            string free = accelerator is CudaAccelerator cuda ? $", {Gib(cuda.GetFreeMemory())} free" : "";
            string total = accelerator.MemorySize >= 1L << 50 ? "no fixed size" : Gib(accelerator.MemorySize);
            throw new UserError(
                $"{Name(accelerator)}: out of device memory allocating {Gib(bytes)} (the device has {total}{free}); " +
                $"try a smaller {hint}, or --device cpu", UserError.DeviceError, e);
        }
    }

    /// <summary>
    /// The drivers' errors for an allocation the device has no room for. Any other error of theirs
    /// is the device failing (an earlier kernel's fault shows at the next call), not memory.
    /// </summary>
    internal static bool OutOfMemory(Exception e) =>
        e is CudaException { Error: nameof(CudaError.CUDA_ERROR_OUT_OF_MEMORY) }
            // Not CL_OUT_OF_RESOURCES: NVIDIA's OpenCL reports a kernel's fault with it too.
            or CLException { Error: CLError.CL_MEM_OBJECT_ALLOCATION_FAILURE or CLError.CL_OUT_OF_HOST_MEMORY or CLError.CL_INVALID_BUFFER_SIZE };

    /// <summary>
    /// Disposes each, in order. Once a kernel has faulted, CUDA fails every later call, freeing
    /// memory too: those errors are dropped, so that the error the run stopped on is the one
    /// reported (a using block would replace it with the first of these) and the rest is freed.
    /// </summary>
    public static void Release(params ReadOnlySpan<IDisposable?> resources)
    {
        foreach (var resource in resources)
        {
            try
            {
                resource?.Dispose();
            }
            catch (AcceleratorException)
            {
            }
        }
    }

    private static void Poison<T>(MemoryBuffer1D<T, Stride1D.Dense> buffer)
        where T : unmanaged
    {
        if (buffer is MemoryBuffer1D<float, Stride1D.Dense> floats)
            floats.View.CopyFromCPU(Enumerable.Repeat(float.NaN, (int)floats.Length).ToArray());
        else if (buffer is MemoryBuffer1D<int, Stride1D.Dense> ints)
            ints.View.CopyFromCPU(Enumerable.Repeat(int.MinValue, (int)ints.Length).ToArray());
    }

    private static string Gib(long bytes) => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{bytes / (1024.0 * 1024 * 1024):F2} GiB");
}
