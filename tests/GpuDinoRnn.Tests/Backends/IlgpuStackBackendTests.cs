// The stack suite on every ILGPU accelerator: the CPU emulator always, CUDA and OpenCL where
// present (skipped, with the reason, where not).
using GpuDinoRnn.Backends;
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;
using GpuDinoRnn.Tests.Reference;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Backends;

public sealed class IlgpuStackCpuBackendTests(ITestOutputHelper output) : StackBackendTests(output)
{
    protected override (IBackend? Backend, string? Missing) Create(ModelShape shape, DropoutConfig dropout) =>
        (Devices.Create("ilgpu-cpu", shape, threads: 2, dropout: dropout), null);

    [Fact]
    public void DevicesPickTheStackBackendForEveryModelButTheVanillaOneWithoutDropout()
    {
        using var vanilla = Devices.Create("ilgpu-cpu", new ModelShape(4, 5), threads: 1);
        using var vanillaDropout = Devices.Create("ilgpu-cpu", new ModelShape(4, 5), threads: 1, dropout: new DropoutConfig(0.1f, 1));
        using var gru = Devices.Create("ilgpu-cpu", new ModelShape(4, 5, CellKind.Gru), threads: 1);
        Assert.IsType<IlgpuBackend>(vanilla);
        Assert.IsType<IlgpuStackBackend>(vanillaDropout);
        Assert.IsType<IlgpuStackBackend>(gru);
    }

    [Fact]
    public void OneVanillaLayerWithDropoutKeepsTheCoursesLayoutAndMatchesTheReference()
    {
        // The suite's vanilla case has no dropout and so runs on IlgpuBackend; this one reaches
        // the stack kernels with StackDims' course order (Wax, Waa, Wya, b, by).
        var shape = new ModelShape(5, 7);
        var drop = new DropoutConfig(0.3f, Seed: 9);
        using var backend = Devices.Create("ilgpu-cpu", shape, threads: 2, dropout: drop);
        Assert.IsType<IlgpuStackBackend>(backend);
        var p = TestData.RandomParameters(shape, seed: 6);
        backend.Upload(p);
        var batch = Batch.FromEncoded(TestData.RandomNames(4, shape.V, seed: 3, minLength: 1, maxLength: 5));
        var grad = new float[shape.ParameterCount];
        float loss = backend.Gradients(batch, carryState: false, grad);
        var expected = ReferenceStack.Run(TestData.ToDouble(p.Data), shape, batch, dropout: drop.ForUpdate(1));
        Output.WriteLine($"loss {loss} vs reference {expected.Loss}");
        Assert.Equal(expected.Loss, loss, expected.Loss * 1e-5);
        TestData.AssertClose(Output, "every gradient", expected.Grad, grad, rtol: 1e-4, atol: 1e-5);
    }

    [Fact]
    public void LaunchesPerStepDependNeitherOnTheNamesLengthNorOnTheBatchSize()
    {
        var shape = new ModelShape(6, 6, CellKind.Lstm, 2);
        using var backend = Devices.Create("ilgpu-cpu", shape, threads: 2, dropout: new DropoutConfig(0.2f, 1));
        backend.Upload(TestData.RandomParameters(shape, 1));
        int Launches(int names, int longest, bool carry)
        {
            var batch = Batch.FromEncoded(Enumerable.Range(0, names).Select(n => Enumerable.Range(1, 1 + n % longest).Select(c => 1 + c % 5).ToArray()).ToArray());
            Assert.Equal(Math.Min(names, longest) + 1, batch.T);
            backend.Step(batch, new StepSettings(0.1f, 1f, ClipMode.Norm, CarryState: carry));
            return backend.LaunchesPerStep;
        }
        int small = Launches(3, 3, false), wide = Launches(16, 3, false), longer = Launches(16, 7, false);
        int carried = Launches(16, 7, true);
        Output.WriteLine($"{small} launches with B = 3, T = 4; {wide} with B = 16, T = 4; {longer} with B = 16, T = 8; {carried} carrying the state");
        Assert.Equal(small, wide);
        Assert.Equal(small, longer);
        // Initial state, transposed weights, L forward passes, output layer, L backward passes, L − 1 input
        // gradients, weight gradients, norm partials, loss, update: 3L + 6 = 12 for L = 2; carrying the state adds one.
        Assert.Equal(12, small);
        Assert.Equal(13, carried);
    }
}

public sealed class IlgpuStackCudaBackendTests(ITestOutputHelper output) : StackBackendTests(output)
{
    protected override (IBackend? Backend, string? Missing) Create(ModelShape shape, DropoutConfig dropout) => GpuOrNull("cuda", shape, dropout);

    internal static (IBackend?, string?) GpuOrNull(string kind, ModelShape shape, DropoutConfig dropout)
    {
        bool present = Devices.List(1).Any(d => d.Id.StartsWith(kind + ":", StringComparison.Ordinal) && d.Usable);
        return present ? (Devices.Create(kind, shape, 1, dropout: dropout), null) : (null, $"no usable {kind} device on this machine");
    }
}

public sealed class IlgpuStackOpenClBackendTests(ITestOutputHelper output) : StackBackendTests(output)
{
    protected override (IBackend? Backend, string? Missing) Create(ModelShape shape, DropoutConfig dropout) =>
        IlgpuStackCudaBackendTests.GpuOrNull("opencl", shape, dropout);
}
