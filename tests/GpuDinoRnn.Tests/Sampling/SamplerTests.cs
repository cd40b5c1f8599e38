// Sampling: seeded streams independent of batching, the filters, the prefix and length limits,
// and log-probabilities that agree with the reference model's loss.
using System.Text.Json;
using GpuDinoRnn.Data;
using GpuDinoRnn.Model;
using GpuDinoRnn.Sampling;
using GpuDinoRnn.Tests.Hardening;
using GpuDinoRnn.Tests.Reference;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Sampling;

public class SamplerTests(ITestOutputHelper output)
{
    private static readonly Vocabulary Vocab = Vocabulary.Deserialize("\nabcdefghijklmnopqrstuvwxyz");
    private static readonly Parameters Model = TestData.RandomParameters(new ModelShape(16, 27), seed: 4, scale: 0.6);

    [Fact]
    public void TheSameSeedGivesTheSameNamesWhateverTheBatch()
    {
        var o = new SampleOptions();
        var all = Sampler.SampleMany(Model, Vocab, o, seed: 9, first: 0, count: 60);
        var firstTen = Sampler.SampleMany(Model, Vocab, o, seed: 9, first: 0, count: 10);
        var later = Sampler.SampleMany(Model, Vocab, o, seed: 9, first: 40, count: 20);
        Assert.Equal(all[..10], firstTen);
        Assert.Equal(all[40..], later);
        Assert.Equal(all[7], new Sampler(Model, Vocab).Sample(o, 9, 7));
        Assert.NotEqual(all.Select(s => s.Name), Sampler.SampleMany(Model, Vocab, o, seed: 10, first: 0, count: 60).Select(s => s.Name));
        Assert.True(all.Select(s => s.Name).Distinct().Count() > 30);
    }

    [Fact]
    public void LogProbabilityIsMinusTheReferenceLoss()
    {
        var names = Sampler.SampleMany(Model, Vocab, new SampleOptions(Temperature: 1.3), seed: 2, first: 0, count: 20);
        var p = TestData.ToDouble(Model.Data);
        foreach (var s in names)
        {
            double loss = ReferenceRnn.Run(p, 16, 27, Batch.FromEncoded([Vocab.Encode(s.Name)])).Loss;
            Assert.Equal(-loss, s.LogProbability, 1e-4);
        }
    }

    [Fact]
    public void TopKOneAndATinyTopPAreGreedy()
    {
        var greedy = Sampler.SampleMany(Model, Vocab, new SampleOptions(TopK: 1), seed: 1, first: 0, count: 10).Select(s => s.Name).ToList();
        Assert.Single(greedy.Distinct());
        var nucleus = Sampler.SampleMany(Model, Vocab, new SampleOptions(TopP: 1e-6), seed: 5, first: 0, count: 10).Select(s => s.Name);
        Assert.Equal(greedy, nucleus);
        var topThree = Sampler.SampleMany(Model, Vocab, new SampleOptions(TopK: 3), seed: 1, first: 0, count: 50);
        Assert.True(topThree.Select(s => s.Name).Distinct().Count() > 1);
    }

    [Fact]
    public void PrefixAndLengthLimitsHold()
    {
        var o = new SampleOptions(Prefix: "ty", MinLength: 6, MaxLength: 9);
        var names = Sampler.SampleMany(Model, Vocab, o, seed: 3, first: 0, count: 200).Select(s => s.Name).ToList();
        Assert.All(names, n =>
        {
            Assert.StartsWith("ty", n);
            Assert.InRange(n.Length, 6, 9);
        });
        Assert.Contains(names, n => n.Length < 9); // the end of name is still drawn once allowed
    }

    [Theory]
    [InlineData("--top-k", "0", "--top-k must be at least 1")]
    [InlineData("--top-k", "-1", "--top-k must be at least 1")]
    [InlineData("--top-p", "0", "--top-p must be in (0, 1]")]
    [InlineData("--top-p", "1.5", "--top-p must be in (0, 1]")]
    [InlineData("--min-length", "60", "--min-length must be between 0 and --max-length 50")]
    [InlineData("--prefix", "t9", "--prefix: the symbol '9'")]
    [InlineData("--format", "xml", "--format must be text or jsonl")]
    public void BadSampleOptionsAreOneLineErrors(string option, string value, string message)
    {
        using var dir = new CliRunner.TempDir();
        string model = dir.File("m.safetensors");
        GpuDinoRnn.Checkpoints.Checkpoint.Save(model, Model, Vocab);
        CliRunner.AssertOneLineError(output, ["sample", "--model", model, option, value], 2, message);
    }

    [Fact]
    public void NovelKeepsOnlyNewNamesAndReportsTheRates()
    {
        using var dir = new CliRunner.TempDir();
        string model = dir.File("m.safetensors");
        Assert.Equal(0, CliRunner.Run(output, "train", "--device", "cpu", "--data", TestData.BundledNames, "--hidden", "32", "--epochs", "4",
            "--sample-count", "0", "--checkpoint", model).Code);
        var training = Dataset.Load(TestData.BundledNames).Names.ToHashSet();

        var (code, stdout, stderr) = CliRunner.Run(output, "sample", "--model", model, "--count", "200", "--temperature", "0.6", "--format", "jsonl");
        Assert.Equal(0, code);
        var records = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(200, records.Count);
        Assert.All(records, r => Assert.Equal(!training.Contains(r.GetProperty("name").GetString()!), r.GetProperty("novel").GetBoolean()));
        Assert.All(records, r => Assert.True(r.GetProperty("log_probability").GetDouble() < 0));
        int copies = records.Count(r => !r.GetProperty("novel").GetBoolean());
        Assert.True(copies > 0, "at temperature 0.6 some training names come back: the filter below is then tested");
        Assert.Contains($"{100.0 * (200 - copies) / 200:F1}% not in the training data", stderr);

        (code, stdout, stderr) = CliRunner.Run(output, "sample", "--model", model, "--count", "200", "--temperature", "0.6", "--novel");
        Assert.Equal(0, code);
        var names = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(200, names.Length);
        Assert.All(names, n => Assert.DoesNotContain(n.ToLowerInvariant(), training));
        // The report counts the names looked at until the 200th new one, not the spare ones drawn with them.
        var stream = CliRunner.Run(output, "sample", "--model", model, "--count", "400", "--temperature", "0.6", "--format", "jsonl").Out
            .Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("novel").GetBoolean()).ToList();
        int looked = stream.Select((isNew, i) => (isNew, i)).Where(x => x.isNew).Skip(199).First().i + 1;
        Assert.Contains(string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"200 names: all new: {looked} drawn, {100.0 * 200 / looked:F1}% of them not in the training data"), stderr);
    }

    [Fact]
    public void NamesArePrintedCapitalisedOnlyFromAModelOfLowerCasedNames()
    {
        using var dir = new CliRunner.TempDir();
        string data = dir.File("names.txt"), kept = dir.File("kept.safetensors"), lower = dir.File("lower.safetensors");
        File.WriteAllText(data, string.Concat(Enumerable.Repeat("vanDam\nvonTrapp\nderWent\n", 30)));
        string[] quick = ["train", "--data", data, "--device", "cpu", "--hidden", "16", "--iterations", "200", "--lr", "0.02", "--sample-count", "0"];
        Assert.Equal(0, CliRunner.Run(output, [.. quick, "--keep-case", "--checkpoint", kept]).Code);
        Assert.Equal(0, CliRunner.Run(output, [.. quick, "--checkpoint", lower]).Code);

        // Kept case: the text output is the names as drawn (jsonl has them raw).
        var text = CliRunner.Run(output, "sample", "--model", kept, "--count", "20").Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var raw = CliRunner.Run(output, "sample", "--model", kept, "--count", "20", "--format", "jsonl").Out.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => JsonDocument.Parse(l).RootElement.GetProperty("name").GetString()).ToArray();
        Assert.Equal(raw, text);
        Assert.Contains(text, n => n.Length > 0 && char.IsLower(n[0]));

        // Lower-cased: printed capitalised, and a prefix typed as the names show is read lower-cased.
        var (code, stdout, _) = CliRunner.Run(output, "sample", "--model", lower, "--count", "5", "--prefix", "Von");
        Assert.Equal(0, code);
        Assert.All(stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries), n => Assert.StartsWith("Von", n));
    }
}
