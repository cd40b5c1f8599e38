// Validation during training (--eval-every, --keep-best, --patience), the eval verb, and names
// beyond a–z.
using System.Globalization;
using System.Text.Json;
using GpuDinoRnn.Checkpoints;
using GpuDinoRnn.Tests.Hardening;
using GpuDinoRnn.Tests.Reference;
using GpuDinoRnn.Training;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Training;

public class ValidationTests(ITestOutputHelper output)
{
    /// <summary>A run that overfits: lr 0.1 on H 48 gets worse on validation after a few hundred steps.</summary>
    internal static TrainOptions Options(string checkpoint) => new()
    {
        Data = TestData.BundledNames,
        Device = "cpu",
        Hidden = 48,
        Batch = 16,
        Lr = 0.1f,
        Optimizer = "sgd",
        Epochs = 30,
        EvalEvery = 25,
        Checkpoint = checkpoint,
        LogFormat = LogFormat.Jsonl,
        SampleCount = 0,
        Threads = 2,
    };

    private static List<JsonElement> Evals(StringWriter stdout) => stdout.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries)
        .Select(l => JsonDocument.Parse(l).RootElement)
        .Where(r => r.TryGetProperty("event", out var e) && e.GetString() == "eval").ToList();

    [Fact]
    public void KeepBestKeepsTheLowestValidationAndPatienceStopsEarly()
    {
        using var dir = new CliRunner.TempDir();
        string path = dir.File("best.safetensors");
        var stdout = new StringWriter();
        var result = new Trainer(Options(path) with { KeepBest = true, Patience = 3 }, stdout, TextWriter.Null).Run();
        var evals = Evals(stdout);
        output.WriteLine(string.Join("\n", evals.Select(e => e.ToString())));
        Assert.True(result.StoppedEarly, "30 epochs at lr 0.1 overfit: patience should stop the run");
        Assert.True(result.Iterations < 30 * 75);
        var best = evals.MinBy(e => e.GetProperty("val_bits_per_char").GetDouble());
        int bestIteration = best.GetProperty("iteration").GetInt32();
        // The three evaluations after the best found nothing better, and training stopped there.
        Assert.Equal(bestIteration, evals[^4].GetProperty("iteration").GetInt32());
        Assert.Equal(evals[^1].GetProperty("iteration").GetInt32(), result.Iterations);

        var kept = Checkpoint.Load(path);
        Assert.Equal(bestIteration.ToString(CultureInfo.InvariantCulture), kept.Metadata["iteration"]);
        var (code, evalOut, _) = CliRunner.Run(output, "eval", "--model", path, "--data", TestData.BundledNames, "--format", "jsonl");
        Assert.Equal(0, code);
        Assert.True(JsonDocument.Parse(evalOut).RootElement.GetProperty("bits_per_char").GetDouble() > 0);
        // The run itself ends with the best model too: its summary and its weights are the checkpoint's.
        Assert.Equal(best.GetProperty("val_bits_per_char").GetDouble(), result.ValBitsPerChar!.Value, 1e-5);
        Assert.Equal(kept.Parameters.Data, result.Parameters.Data);
    }

    [Fact]
    public void KeepBestWithoutACheckpointEndsWithTheBestModel()
    {
        var stdout = new StringWriter();
        var result = new Trainer(Options(null!) with { Checkpoint = null, KeepBest = true, Patience = 3 }, stdout, TextWriter.Null).Run();
        var evals = Evals(stdout);
        double best = evals.Min(e => e.GetProperty("val_bits_per_char").GetDouble());
        double last = evals[^1].GetProperty("val_bits_per_char").GetDouble();
        output.WriteLine($"best {best:F4}, last evaluation {last:F4}, the run's result {result.ValBitsPerChar:F4}");
        Assert.True(result.StoppedEarly && best < last, "this run must overfit and stop early for the test to mean anything");
        Assert.Equal(best, result.ValBitsPerChar!.Value, 1e-5);
        // The result's weights give that validation loss again.
        using var backend = GpuDinoRnn.Backends.Devices.Create("cpu", result.Parameters.Shape, 1);
        backend.Upload(result.Parameters);
        var vocab = result.Vocabulary;
        var (_, val) = GpuDinoRnn.Data.Dataset.Load(TestData.BundledNames).Split(0.1, 1);
        double again = Trainer.BitsPerChar(backend, GpuDinoRnn.Data.Batcher.Cover(val.Select(vocab.Encode).ToList(), 256));
        Assert.Equal(best, again, 1e-4);
    }

    [Fact]
    public void EvalGivesTheTrainersBitsPerCharacter()
    {
        using var dir = new CliRunner.TempDir();
        string path = dir.File("m.safetensors");
        var result = new Trainer(Options(path) with { EvalEvery = 0, Epochs = 2, ValFraction = 0 }, TextWriter.Null, TextWriter.Null).Run();
        foreach (var device in new[] { "cpu", "ilgpu-cpu" })
        {
            var (code, stdout, _) = CliRunner.Run(output, "eval", "--model", path, "--data", TestData.BundledNames, "--device", device, "--format", "jsonl");
            Assert.Equal(0, code);
            var r = JsonDocument.Parse(stdout).RootElement;
            Assert.Equal(1325, r.GetProperty("names").GetInt32());
            Assert.Equal(16961, r.GetProperty("chars").GetInt64());
            Assert.Equal(result.TrainBitsPerChar, r.GetProperty("bits_per_char").GetDouble(), 1e-4);
        }
        string other = dir.File("other.txt");
        File.WriteAllText(other, "tyrannosaurus\nvelociraptor9\n");
        var bad = CliRunner.Run(output, "eval", "--model", path, "--data", other);
        Assert.Equal(2, bad.Code);
        Assert.Contains("'9'", bad.Err);
    }

    [Theory]
    [InlineData("--keep-best", "--keep-best and --patience need --eval-every N")]
    [InlineData("--patience 2", "--keep-best and --patience need --eval-every N")]
    [InlineData("--patience 2 --eval-every 10 --val-fraction 0", "need a validation split")]
    [InlineData("--keep-best --eval-every 10 --checkpoint x.safetensors --checkpoint-every 5", "contradict each other")]
    public void ValidationOptionsThatCannotWork(string options, string message)
    {
        var (code, _, stderr) = CliRunner.Run(output, ["train", "--device", "cpu", "--iterations", "1", .. options.Split(' ')]);
        Assert.Equal(2, code);
        Assert.Contains(message, stderr);
    }

    [Fact]
    public void KeepBestOnDataTooSmallToHoldOutANameIsAnError()
    {
        using var dir = new CliRunner.TempDir();
        string data = dir.File("one.txt");
        File.WriteAllText(data, "tyrannosaurus\n");
        CliRunner.AssertOneLineError(output, ["train", "--data", data, "--device", "cpu", "--iterations", "5", "--eval-every", "2", "--keep-best"], 2,
            $"--keep-best and --patience need validation names: '{data}' leaves none at --val-fraction 0.1");
    }

    [Fact]
    public void NamesWithAccentsAndOtherScriptsTrainAndSample()
    {
        using var dir = new CliRunner.TempDir();
        string data = dir.File("names.txt");
        File.WriteAllText(data, string.Join('\n', Enumerable.Repeat(new[] { "Zoë", "Ærøskøbing", "Łódź", "Ελένη", "山田", "Jürgen", "Noël" }, 20).SelectMany(x => x)));
        string model = dir.File("m.safetensors");
        var (code, stdout, _) = CliRunner.Run(output, "train", "--data", data, "--device", "cpu", "--hidden", "32", "--iterations", "300",
            "--lr", "0.3", "--optimizer", "sgd", "--keep-case", "--checkpoint", model, "--sample-count", "0");
        Assert.Equal(0, code);
        var loaded = Checkpoint.Load(model);
        Assert.Contains("山", loaded.Vocabulary.Symbols);
        Assert.Contains("ë", loaded.Vocabulary.Symbols);
        var sampled = CliRunner.Run(output, "sample", "--model", model, "--count", "20", "--temperature", "0.5");
        Assert.Equal(0, sampled.Code);
        var names = sampled.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains(names, n => n is "Zoë" or "Ærøskøbing" or "Łódź" or "Ελένη" or "山田" or "Jürgen" or "Noël");
    }
}
