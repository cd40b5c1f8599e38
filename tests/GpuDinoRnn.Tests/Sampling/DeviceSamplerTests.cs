// Names drawn on the device (SampleKernels on ILGPU's CPU accelerator): the same names whatever
// the batch size, the model's own log-probabilities, and the host sampler's draw rules.
using GpuDinoRnn.Backends;
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;
using GpuDinoRnn.Sampling;
using GpuDinoRnn.Tests.Reference;
using ILGPU.Runtime.CPU;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Sampling;

public class DeviceSamplerTests(ITestOutputHelper output)
{
    private static readonly Vocabulary Vocab = Vocabulary.Deserialize("\nabcdefghij");

    private static IlgpuSampler Create(Parameters p, int batchSize)
    {
        var context = Devices.CreateContext(threads: 2, includeUnsupported: false);
        return new IlgpuSampler(context.GetCPUDevice(0).CreateAccelerator(context), p, Vocab, batchSize, context);
    }

    private static Parameters Model(CellKind cell, int layers) =>
        TestData.RandomParameters(new ModelShape(6, Vocab.Size, cell, layers), seed: 4, scale: 0.5);

    [Theory]
    [InlineData(CellKind.Rnn, 1)]
    [InlineData(CellKind.Gru, 2)]
    [InlineData(CellKind.Lstm, 1)]
    public void NamesDoNotDependOnTheBatchSizeAndCarryTheModelsLogProbability(CellKind cell, int layers)
    {
        var p = Model(cell, layers);
        var options = new SampleOptions(MaxLength: 10);
        using var small = Create(p, batchSize: 3);
        using var large = Create(p, batchSize: 64);
        var a = small.Sample(options, seed: 7, first: 0, count: 40);
        var b = large.Sample(options, seed: 7, first: 0, count: 40);
        var tail = small.Sample(options, seed: 7, first: 25, count: 15);
        Assert.Equal(a, b);
        Assert.Equal(a.Skip(25), tail);
        Assert.True(a.Select(n => n.Name).Distinct().Count() > 20, "hardly any different names");
        // Names that ended before the limit drew the end themselves: their whole probability is checked.
        var ended = a.Where(n => n.Name.Length < 10).ToList();
        output.WriteLine($"{ended.Count} of {a.Length} names ended before the length limit");
        Assert.True(ended.Count >= 15, $"only {ended.Count} of {a.Length} names ended before the length limit");
        foreach (var name in ended)
        {
            var batch = Batch.FromEncoded([Vocab.Encode(name.Name)]);
            double loss = ReferenceStack.Run(TestData.ToDouble(p.Data), p.Shape, batch).Loss;
            Assert.Equal(-loss, name.LogProbability, 2e-4);
        }
    }

    [Theory]
    [InlineData(CellKind.Rnn, 1)]
    [InlineData(CellKind.Lstm, 2)]
    public void TheDeviceDrawsWhatTheHostDraws(CellKind cell, int layers)
    {
        // The host draws u in float64 and, for the course's cell, computes in float64: a name may
        // differ only where u falls within float32 rounding of a boundary. Greedy draws never differ.
        var p = Model(cell, layers);
        using var device = Create(p, batchSize: 50);
        var options = new SampleOptions(Temperature: 0.8, MaxLength: 12);
        var onDevice = device.Sample(options, seed: 3, first: 0, count: 200);
        var onHost = Sampler.SampleMany(p, Vocab, options, seed: 3, first: 0, count: 200);
        int same = onDevice.Zip(onHost).Count(x => x.First.Name == x.Second.Name);
        output.WriteLine($"{same} of 200 names identical");
        Assert.True(same >= 196, $"only {same} of 200 names are the host's");
        var greedy = new SampleOptions(TopK: 1, MinLength: 2, MaxLength: 12);
        Assert.Equal(Sampler.SampleMany(p, Vocab, greedy, 1, 0, 1)[0].Name, device.Sample(greedy, 1, 0, 1)[0].Name);
    }

    [Fact]
    public void ALaunchOfLongNamesStaysWithinTheKernelsIndices()
    {
        // 65,536 names of up to 100,000 symbols would be 6.5·10⁹ symbols, beyond what int indexes: fewer per launch.
        int perLaunch = IlgpuSampler.NamesPerLaunch(SampleOptions.MaxMaxLength, 65_536);
        Assert.InRange((long)perLaunch * SampleOptions.MaxMaxLength, 1, IlgpuSampler.MaxIdsPerLaunch);
        Assert.Equal(65_536, IlgpuSampler.NamesPerLaunch(50, 65_536));
        Assert.Equal(1, IlgpuSampler.NamesPerLaunch(SampleOptions.MaxMaxLength, 65_536, maxIds: 10));

        // Split so, the names are the same: here 10 names of up to 100 symbols a launch.
        var p = Model(CellKind.Rnn, 1);
        var options = new SampleOptions(MaxLength: 100);
        var context = Devices.CreateContext(threads: 2, includeUnsupported: false);
        using var split = new IlgpuSampler(context.GetCPUDevice(0).CreateAccelerator(context), p, Vocab, 64, context, maxIdsPerLaunch: 1_000);
        using var whole = Create(p, batchSize: 64);
        Assert.Equal(whole.Sample(options, seed: 2, first: 0, count: 45), split.Sample(options, seed: 2, first: 0, count: 45));
    }

    [Fact]
    public void PrefixLengthLimitsAndFiltersAreObeyed()
    {
        var p = Model(CellKind.Gru, 1);
        using var device = Create(p, batchSize: 16);
        var options = new SampleOptions(Temperature: 1.5, TopK: 4, TopP: 0.9, Prefix: "ab", MinLength: 4, MaxLength: 7);
        var names = device.Sample(options, seed: 5, first: 0, count: 100);
        Assert.All(names, n => Assert.StartsWith("ab", n.Name));
        Assert.All(names, n => Assert.InRange(n.Name.Length, 4, 7));
        var onHost = Sampler.SampleMany(p, Vocab, options, seed: 5, first: 0, count: 100);
        int same = names.Zip(onHost).Count(x => x.First.Name == x.Second.Name);
        output.WriteLine($"{same} of 100 filtered names identical to the host's");
        Assert.True(same >= 97, $"only {same} of 100 filtered names are the host's");
    }
}
