// Long runs: many steps with frequent checkpoints and sampling; memory must stay flat and every
// checkpoint must load. Not part of the default run: set GPUDINORNN_SOAK_STEPS (CI uses a
// small budget: `GPUDINORNN_SOAK_STEPS=3000 dotnet test --filter Category=Soak`).
using GpuDinoRnn.Backends;
using GpuDinoRnn.Checkpoints;
using GpuDinoRnn.Data;
using GpuDinoRnn.Model;
using GpuDinoRnn.Sampling;
using GpuDinoRnn.Tests.Reference;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Hardening;

[Trait("Category", "Soak")]
public class SoakTests(ITestOutputHelper output)
{
    [SkippableTheory]
    [InlineData("cpu", 1)]
    [InlineData("ilgpu-cpu", 20)]
    public void MemoryStaysFlatAndEveryCheckpointLoads(string device, int slowdown)
    {
        string? budget = Environment.GetEnvironmentVariable("GPUDINORNN_SOAK_STEPS");
        Skip.If(budget is null, "soak test: set GPUDINORNN_SOAK_STEPS to run it");
        int steps = Math.Max(8 * 50, int.Parse(budget!) / slowdown);
        const int every = 50;

        var dataset = Dataset.Load(TestData.BundledNames);
        var vocab = Vocabulary.FromNames(dataset.Names);
        var names = dataset.Names.Select(vocab.Encode).ToList();
        var shape = new ModelShape(32, vocab.Size);
        using var backend = Devices.Create(device, shape, threads: 2);
        var parameters = Parameters.Initialize(shape, InitScheme.Xavier, seed: 1);
        backend.Upload(parameters);
        var batcher = new Batcher(names, 16, ShuffleMode.Epoch, seed: 1);
        var settings = new StepSettings(0.05f, 5f, ClipMode.Norm, CarryState: false);
        using var dir = new CliRunner.TempDir();
        string path = dir.File("soak.safetensors");
        long sampled = 0;
        long heapAfterWarmUp = 0, deviceAfterWarmUp = 0;
        int checkpoints = 0;
        for (int step = 1; step <= steps; step++)
        {
            backend.Step(batcher.Next(), settings);
            if (step % every != 0)
                continue;
            Assert.All(backend.TakeLosses(), l => Assert.True(float.IsFinite(l)));
            backend.Download(parameters);
            Checkpoint.Save(path, parameters, vocab, new Dictionary<string, string> { ["iteration"] = step.ToString() });
            var loaded = Checkpoint.Load(path);
            Assert.Equal(parameters.Data, loaded.Parameters.Data);
            checkpoints++;
            var sampler = new Sampler(parameters, vocab);
            for (int n = 0; n < 5; n++)
                sampler.Sample(new SampleOptions(), seed: 1, index: sampled++);
            if (step == 4 * every)
            {
                heapAfterWarmUp = GC.GetTotalMemory(true);
                deviceAfterWarmUp = (backend as IlgpuBackend)?.DeviceBytes ?? 0;
            }
        }
        long heapGrowth = GC.GetTotalMemory(true) - heapAfterWarmUp;
        long deviceGrowth = ((backend as IlgpuBackend)?.DeviceBytes ?? 0) - deviceAfterWarmUp;
        output.WriteLine($"{device}: {steps} steps, {checkpoints} checkpoints loaded; managed heap grew {heapGrowth / 1024} KiB, device buffers grew {deviceGrowth} bytes after warm-up");
        Assert.True(heapGrowth < 2 << 20, $"managed heap grew {heapGrowth} bytes");
        Assert.Equal(0, deviceGrowth);
    }
}
