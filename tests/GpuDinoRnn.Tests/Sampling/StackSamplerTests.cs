// The sampler steps gru, lstm and stacked models on the host: a drawn name's log-probability must
// be the model's own, which ReferenceStack computes independently as the name's loss.
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;
using GpuDinoRnn.Sampling;
using GpuDinoRnn.Tests.Reference;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Sampling;

public class StackSamplerTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(CellKind.Gru, 1)]
    [InlineData(CellKind.Lstm, 2)]
    [InlineData(CellKind.Rnn, 3)]
    public void ADrawnNamesLogProbabilityIsTheModelsLoss(CellKind cell, int layers)
    {
        var vocab = Vocabulary.Deserialize("\nabcdefgh");
        var shape = new ModelShape(7, vocab.Size, cell, layers);
        var p = TestData.RandomParameters(shape, seed: 6, scale: 0.4);
        var names = Sampler.SampleMany(p, vocab, new SampleOptions(MaxLength: 12), seed: 3, first: 0, count: 20);
        Assert.True(names.Select(n => n.Name).Distinct().Count() > 10, "the model draws hardly anything different");
        // Names that ended before the limit drew the end themselves: their whole probability is checked.
        var ended = names.Where(n => n.Name.Length < 12).ToList();
        output.WriteLine($"{ended.Count} of {names.Length} names ended before the length limit");
        Assert.True(ended.Count >= 6, $"only {ended.Count} of {names.Length} names ended before the length limit");
        foreach (var name in ended)
        {
            var batch = Batch.FromEncoded([vocab.Encode(name.Name)]);
            double loss = ReferenceStack.Run(TestData.ToDouble(p.Data), shape, batch).Loss;
            output.WriteLine($"{name.Name}: log p = {name.LogProbability:F6}, reference loss {loss:F6}");
            Assert.Equal(-loss, name.LogProbability, 1e-4);
        }
    }
}
