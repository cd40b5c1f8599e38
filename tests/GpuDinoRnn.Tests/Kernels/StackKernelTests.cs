// StackKernels' weight transpose alone on ILGPU's CPU accelerator, its output poisoned with NaN so
// an element it fails to write shows (the passes themselves are checked against ReferenceStack
// through IlgpuStackBackend).
using GpuDinoRnn.Backends;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;
using GpuDinoRnn.Tests.Reference;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;

namespace GpuDinoRnn.Tests.Kernels;

public sealed class StackKernelTests
{
    [Theory]
    [InlineData(CellKind.Lstm, 2, 5)]
    [InlineData(CellKind.Gru, 3, 7)]
    public void TransposeWeightsWritesEveryLayersWaaAndWaxTransposed(CellKind cell, int layers, int h)
    {
        var shape = new ModelShape(h, 9, cell, layers);
        var d = shape.Stack(1, 1);
        var p = TestData.RandomParameters(shape, seed: 4);
        using var context = Devices.CreateContext(threads: 2, includeUnsupported: false);
        using var acc = context.GetCPUDevice(0).CreateAccelerator(context);
        var k = acc.LoadAutoGroupedStreamKernel<Index1D, StackDims, ArrayView<float>, ArrayView<float>>(StackKernels.TransposeWeights);
        using var pd = acc.Allocate1D(p.Data);
        int length = 2 * layers * h * d.GH;
        using var wT = acc.Allocate1D(Enumerable.Repeat(float.NaN, length).ToArray());

        k(length, d, pd.View, wT.View);

        var got = wT.GetAsArray1D();
        for (int l = 0; l < layers; l++)
            for (int j = 0; j < h; j++)
                for (int gi = 0; gi < d.GH; gi++)
                {
                    int at = l * 2 * h * d.GH + j * d.GH + gi;
                    Assert.Equal(p.Data[d.WaaOffset(l) + gi * h + j], got[at]);
                    // Layer 0's input is one-hot, read from the parameters: its half holds zeros.
                    Assert.Equal(l > 0 ? p.Data[d.WaxOffset(l) + gi * h + j] : 0f, got[at + h * d.GH]);
                }
    }
}
