// The real CLI entry point (Program.Run) with captured output: verbs, errors as one line with
// an exit code, and the files it writes.
using GpuDinoRnn.Cli;
using GpuDinoRnn.Tests.Reference;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Cli;

public class CliTests(ITestOutputHelper output)
{
    private (int Code, string Out, string Err) Run(params string[] args) => Hardening.CliRunner.Run(output, args);

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    [Fact]
    public void TrainPrintsLossesAndNewNames()
    {
        var (code, stdout, _) = Run("train", "--data", TestData.BundledNames, "--device", "cpu", "--hidden", "16", "--iterations", "30", "--log-every", "10", "--sample-count", "4");
        Assert.Equal(0, code);
        Assert.Equal(4, Lines(stdout).Count(l => l.StartsWith("Iteration: ", StringComparison.Ordinal)));
        Assert.Contains("Bits per character: training", stdout);
        var names = Lines(stdout).SkipWhile(l => !l.StartsWith("Trained", StringComparison.Ordinal)).Skip(1).ToList();
        Assert.Equal(4, names.Count);
        Assert.All(names, n => Assert.True(n.Length > 0 && char.IsUpper(n[0]), $"'{n}' is not a capitalised name"));
    }

    [Theory]
    [InlineData("gru", "1", "0")]
    [InlineData("lstm", "2", "0.2")]
    public void GatedAndStackedModelsTrainSampleAndEvaluate(string cell, string layers, string dropout)
    {
        using var dir = new Hardening.CliRunner.TempDir();
        string model = dir.File("m.safetensors");
        var (code, stdout, stderr) = Run("train", "--data", TestData.BundledNames, "--device", "cpu", "--cell", cell, "--layers", layers, "--dropout", dropout,
            "--hidden", "16", "--iterations", "40", "--sample-count", "3", "--checkpoint", model);
        Assert.Equal(0, code);
        Assert.Contains($"{cell} × {layers}, H = 16", stderr);
        var loaded = GpuDinoRnn.Checkpoints.Checkpoint.Load(model);
        Assert.Equal(cell, loaded.Metadata["cell"]);
        Assert.Equal(layers, loaded.Metadata["layers"]);
        Assert.Equal(GpuDinoRnn.Model.Parameters.NamesOf(loaded.Parameters.Shape), GpuDinoRnn.Checkpoints.SafeTensors.Read(model).Tensors.Select(t => t.Name).Where(n => !n.Contains('.') || n.StartsWith('l')));
        (code, stdout, _) = Run("sample", "--model", model, "--count", "5", "--seed", "2");
        Assert.Equal(0, code);
        Assert.Equal(5, Lines(stdout).Length);
        (code, stdout, _) = Run("eval", "--model", model, "--data", TestData.BundledNames);
        Assert.Equal(0, code);
        Assert.Contains("bits per character", stdout);
        // Drawn on the device, a thread per name, in launches of 7: the host's names.
        var (_, onHost, _) = Run("sample", "--model", model, "--count", "30", "--seed", "4");
        var (deviceCode, onDevice, _) = Run("sample", "--model", model, "--count", "30", "--seed", "4", "--device", "ilgpu-cpu", "--batch", "7");
        Assert.Equal(0, deviceCode);
        Assert.Equal(onHost, onDevice);
    }

    // Each row names a fragment of its own error, so a row that fails for another reason shows.
    [Theory]
    [InlineData("--hidden must be between 1 and 4096 (got 0)", "train", "--hidden", "0")]
    [InlineData("--batch must be at least 1 (got 0)", "train", "--batch", "0")]
    [InlineData("--lr must be a positive number (got -1)", "train", "--lr", "-1")]
    [InlineData("--clip-mode 'sideways' is not one of value, norm (gpudinornn train --help lists its options)", "train", "--clip-mode", "sideways")]
    [InlineData("--optimizer 'lbfgs' is not available", "train", "--optimizer", "lbfgs")]
    [InlineData("--val-fraction must be in [0, 1) (got 1.5)", "train", "--val-fraction", "1.5")]
    [InlineData("--carry-state needs --batch 1", "train", "--carry-state", "--batch", "4")]
    [InlineData("unknown preset 'bogus'", "train", "--preset", "bogus")]
    [InlineData("--cell 'mamba' is not one of rnn, gru, lstm", "train", "--cell", "mamba")]
    [InlineData("--lr '0,5' is not a number written with a dot", "train", "--lr", "0,5")] // not 5, as the invariant culture's thousands separator would have it
    [InlineData("--lr '1,000.5' is not a number written with a dot", "train", "--lr=1,000.5")]
    [InlineData("--temperature '0,5' is not a number written with a dot", "sample", "--model", "x.safetensors", "--temperature", "0,5")]
    [InlineData("--hidden '2147483648' is not a whole number (at most 2147483647)", "train", "--hidden", "2147483648")]
    [InlineData("--threads '1,x' is not a whole number or a comma list of them", "bench", "--threads", "1,x")]
    [InlineData("--hidden needs a value", "train", "--hidden")] // the parser left it unset: the default would have trained
    [InlineData("--data needs a value", "train", "--data", "--hidden", "8")]
    [InlineData("Option 'lr' is defined multiple times", "train", "--lr", "0.1", "--lr", "0.2")]
    [InlineData("Option 'bogus' is unknown (gpudinornn train --help lists its options)", "train", "--bogus", "3")]
    [InlineData("--batch must be at least 1 (got 0)", "sample", "--model", "x.safetensors", "--batch", "0")] // refused before the file is read
    [InlineData("data: file '/nonexistent/names.txt' not found", "train", "--data", "/nonexistent/names.txt")]
    [InlineData("checkpoint '/nonexistent/model.safetensors': does not exist", "train", "--init", "/nonexistent/model.safetensors")]
    [InlineData("checkpoint '/nonexistent/model.safetensors': does not exist", "sample", "--model", "/nonexistent/model.safetensors")]
    [InlineData("Required option 'model' is missing", "sample")]
    [InlineData("Verb 'fly' is not recognized (gpudinornn help lists the commands)", "fly")]
    [InlineData("no command 'fly' to help with", "help", "fly")]
    public void BadInputIsOneLineAndExitCode2(string fragment, params string[] args)
    {
        var (code, stdout, stderr) = Run(args);
        Assert.Equal(2, code);
        Assert.DoesNotContain("   at ", stderr); // no stack trace
        Assert.StartsWith("gpudinornn: error: ", Assert.Single(Lines(stderr)));
        Assert.Contains(fragment, stderr);
        Assert.Equal("", stdout);
    }

    [Theory]
    [InlineData("help", "train", "--hidden")]
    [InlineData("train", "--help", "--hidden")]
    [InlineData("help", "", "bench")]
    [InlineData("help", "version", "bench")] // the built-in verbs: the list
    [InlineData("help", "--help", "bench")]
    [InlineData("HELP", "Train", "--hidden")]
    public void AskedForHelpGoesToStandardOutputWithExitCode0(string first, string second, string fragment)
    {
        var (code, stdout, stderr) = Run(second == "" ? [first] : [first, second]);
        Assert.Equal(0, code);
        Assert.Contains(fragment, stdout);
        Assert.Equal("", stderr);
    }

    [Fact]
    public void SampleRefusesABatchBelowOneFromAGoodCheckpoint()
    {
        // The checkpoint loads: only --batch can be refused.
        using var dir = new Hardening.CliRunner.TempDir();
        string model = dir.File("m.safetensors");
        Assert.Equal(0, Run("train", "--data", TestData.BundledNames, "--device", "cpu", "--hidden", "8", "--iterations", "3", "--sample-count", "0", "--checkpoint", model).Code);
        Assert.Equal(0, Run("sample", "--model", model, "--count", "2", "--batch", "1").Code);
        foreach (string batch in new[] { "0", "-3" })
        {
            Hardening.CliRunner.AssertOneLineError(output, ["sample", "--model", model, "--count", "2", "--batch", batch], 2, $"--batch must be at least 1 (got {batch})");
            Hardening.CliRunner.AssertOneLineError(output, ["sample", "--model", model, "--count", "2", "--batch", batch, "--device", "ilgpu-cpu"], 2, $"--batch must be at least 1 (got {batch})");
        }
    }

    [Fact]
    public void MoreThreadsThanCoresAreCutBackWithALineSayingSo()
    {
        int cores = Environment.ProcessorCount, asked = cores + 3;
        var (code, stdout, stderr) = Run("train", "--data", TestData.BundledNames, "--device", "cpu", "--hidden", "16", "--iterations", "3",
            "--threads", $"{asked}", "--sample-count", "1");
        Assert.Equal(0, code);
        Assert.Contains($"cpu: {asked} threads asked for, {cores} cores here: using {cores}", stderr);
        Assert.Contains($"device cpu ({cores} thread{(cores == 1 ? "" : "s")})", stderr);
        Assert.Contains("Trained 3 iterations", stdout);
        // As many as there are cores: no line.
        (code, _, stderr) = Run("train", "--data", TestData.BundledNames, "--device", "cpu", "--hidden", "16", "--iterations", "1",
            "--threads", $"{cores}", "--sample-count", "1");
        Assert.Equal(0, code);
        Assert.DoesNotContain("threads asked for", stderr);
    }

    [Fact]
    public void AnAbsentDeviceListsTheDevicesThatExist()
    {
        var (code, _, stderr) = Run("train", "--device", "cuda:7", "--iterations", "1");
        Assert.Equal(2, code);
        var line = Assert.Single(Lines(stderr));
        Assert.Contains("cuda:7", line);
        Assert.Contains("cpu", line);
        Assert.Contains("ilgpu-cpu", line);
    }

    [Fact]
    public void DevicesListsTheCpuBackendAndTheEmulator()
    {
        var (code, stdout, _) = Run("devices");
        Assert.Equal(0, code);
        var lines = Lines(stdout);
        Assert.Contains(lines, l => l.Contains(" cpu ") && l.Contains("yes"));
        Assert.Contains(lines, l => l.Contains("ilgpu-cpu") && l.Contains("yes"));
    }

    [Fact]
    public void SampleReadsACheckpointAndRepeatsWithTheSameSeed()
    {
        string dir = Directory.CreateTempSubdirectory("gpudinornn-cli").FullName;
        try
        {
            string model = Path.Combine(dir, "m.safetensors");
            Assert.Equal(0, Run("train", "--data", TestData.BundledNames, "--device", "cpu", "--hidden", "16", "--iterations", "20", "--checkpoint", model).Code);
            var first = Run("sample", "--model", model, "--count", "5", "--seed", "3");
            var second = Run("sample", "--model", model, "--count", "5", "--seed", "3");
            var other = Run("sample", "--model", model, "--count", "5", "--seed", "4");
            Assert.Equal(0, first.Code);
            Assert.Equal(5, Lines(first.Out).Length);
            Assert.Equal(first.Out, second.Out);
            Assert.NotEqual(first.Out, other.Out);
            var bad = Run("sample", "--model", model, "--temperature", "0");
            Assert.Equal(2, bad.Code);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ExplicitOptionsOverrideThePreset()
    {
        var o = new TrainVerb { Preset = "course", Hidden = 20, Lr = 0.1f }.ToOptions();
        Assert.Equal(20, o.Hidden);
        Assert.Equal(0.1f, o.Lr);
        Assert.Equal(1, o.Batch);           // from the preset
        Assert.Equal(35_000, o.Iterations); // from the preset
        Assert.Equal(3, new TrainVerb { Preset = "course", Epochs = 3 }.ToOptions().Epochs);
        Assert.Null(new TrainVerb { Preset = "course", Epochs = 3 }.ToOptions().Iterations);
    }

    [Theory]
    [InlineData(79)]
    [InlineData(40)]
    public void TheProgressDisplayWritesEachLogLineInRowsThatFitTheTerminal(int width)
    {
        // Spectre's live display puts the bar back one row too low after a line it wrapped itself, leaving
        // pieces of old bars on the screen (seen in an 80-column tmux): lines go to it a row at a time.
        const string line = "Iteration: 1000, Loss: 22.646743  (mean since last line 23.0618, |g| 7.471, lr 0.0015, 3,097,254 chars/s)";
        var rows = TrainProgressBar.Rows(line, width).ToList();
        Assert.True(rows.Count > 1);
        Assert.All(rows, r => Assert.InRange(r.Length, 1, width));
        Assert.Equal(line, string.Join(' ', rows));
        Assert.Equal(["abcdefghijklmnopqrst", "uvwxyz"], TrainProgressBar.Rows("abcdefghijklmnopqrstuvwxyz", 20));
        Assert.Equal([""], TrainProgressBar.Rows("", width));

        // The text beside the bar leaves room for it: the percentage, time left and spinner take about 20 columns,
        // and the bar shrinks to what is left.
        var p = new GpuDinoRnn.Training.TrainProgress(1200, 3000, 21.9123, 3_097_254);
        foreach (int w in new[] { 50, 80, 100, 120, 200 })
            Assert.InRange(TrainProgressBar.Describe(p, w).Length, 1, w - 30);
        Assert.Contains("1,200/3,000", TrainProgressBar.Describe(p, 120));
    }
}
