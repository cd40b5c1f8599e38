// What `devices` says of a CUDA GPU, from what ILGPU reads of it: no GPU here, so the values an
// H200 under a CUDA 13 driver gives (and ones ILGPU cannot compile for) are passed in.
using GpuDinoRnn.Backends;
using ILGPU.Runtime.Cuda;

namespace GpuDinoRnn.Tests.Backends;

public sealed class CudaUsabilityTests
{
    [Fact]
    public void AGpuIsUsableWhereIlgpuCanWritePtxForItUnderItsDriver()
    {
        var driver13 = CudaDriverVersion.FromMajorMinor(13, 0);
        var h200 = Devices.CudaUsability(CudaArchitecture.SM_90, CudaAccelerator.GetInstructionSet(CudaArchitecture.SM_90, driver13), driver13);
        Assert.True(h200.Usable, h200.Note);
        Assert.Equal("CUDA, SM_90, PTX ISA 8.8", h200.Note);

        var unknown = Devices.CudaUsability(null, null, driver13);
        Assert.False(unknown.Usable);
        Assert.Equal("an architecture ILGPU 1.5.3 does not know (CUDA driver 13.0)", unknown.Note);

        // An sm_90 GPU under a CUDA 11 driver: no ISA (ILGPU's own lookup finds none).
        var driver11 = CudaDriverVersion.FromMajorMinor(11, 0);
        Assert.False(CudaAccelerator.TryGetInstructionSet(CudaArchitecture.SM_90, driver11, out _, out _));
        var old = Devices.CudaUsability(CudaArchitecture.SM_90, null, driver11);
        Assert.False(old.Usable);
        Assert.Equal("ILGPU 1.5.3 has no PTX ISA for SM_90 under CUDA driver 11.0", old.Note);

        // An ISA newer than the PTX back end writes.
        Assert.False(Devices.CudaUsability(CudaArchitecture.SM_90, new CudaInstructionSet(9, 9), driver13).Usable);
    }
}
