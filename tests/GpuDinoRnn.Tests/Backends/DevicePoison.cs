// Every test of an ILGPU backend or the device sampler gets device buffers that start as NaN
// (floats) or int.MinValue (ids, lengths), as a GPU's fresh memory may hold, rather than the
// zeros ILGPU's CPU accelerator hands out: a kernel that reads an element nothing wrote then
// fails the test that runs it. (KernelTests poison their own buffers.)
using System.Runtime.CompilerServices;
using GpuDinoRnn.Backends;

namespace GpuDinoRnn.Tests.Backends;

internal static class DevicePoison
{
    [ModuleInitializer]
    internal static void PoisonNewDeviceBuffers() => DeviceMemory.PoisonNewBuffers = true;
}
