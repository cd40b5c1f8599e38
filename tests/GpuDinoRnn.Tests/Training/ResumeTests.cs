// `train --resume`: a run stopped half-way and resumed ends with the very weights of a run that
// never stopped, on the same device.
using GpuDinoRnn.Checkpoints;
using GpuDinoRnn.Tests.Hardening;
using GpuDinoRnn.Tests.Reference;
using GpuDinoRnn.Training;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Training;

public class ResumeTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("cpu", "sgd", false)]
    [InlineData("ilgpu-cpu", "sgd", false)]
    [InlineData("cpu", "adam", false)]
    [InlineData("ilgpu-cpu", "rmsprop", false)]
    [InlineData("cpu", "momentum", true)]
    [InlineData("cpu", "adam", false, "lstm", 2, 0.2f)]
    [InlineData("cpu", "sgd", true, "gru", 2, 0.1f)]
    [InlineData("ilgpu-cpu", "adam", false, "lstm", 2, 0.2f)]
    public void AnInterruptedAndResumedRunEndsWithTheSameWeights(string device, string optimizer, bool carry, string cell = "rnn", int layers = 1, float dropout = 0)
    {
        using var dir = new CliRunner.TempDir();
        var options = new TrainOptions
        {
            Data = TestData.BundledNames,
            Device = device,
            Threads = 2,
            Hidden = 12,
            Batch = carry ? 1 : 64,
            Iterations = 60,
            SampleEvery = 25,
            SampleCount = 2,
            Checkpoint = dir.File("whole.safetensors"),
            Optimizer = optimizer,
            Lr = 0.01f,
            CarryState = carry,
            LrSchedule = LrScheduleKind.Cosine,
            Warmup = 5,
            Cell = Model.CellNames.Parse(cell)!.Value,
            Layers = layers,
            Dropout = dropout,
        };
        var whole = new StringWriter();
        var uninterrupted = new Trainer(options, whole, TextWriter.Null).Run();

        // Stop after 27 steps (mid-epoch: 1,193 names are 19 batches of 64), as Ctrl-C would.
        string half = dir.File("half.safetensors");
        using var stop = new CancellationTokenSource();
        var first = new Trainer(options with { Checkpoint = half }, new StringWriter(), TextWriter.Null)
            .Run(cancel: stop.Token, progress: p => { if (p.Iteration == 27) stop.Cancel(); });
        Assert.True(first.Interrupted);
        Assert.Equal(27, first.Iterations);

        var (code, stdout, stderr) = CliRunner.Run(output, "train", "--resume", half, "--device", device, "--threads", "2");
        Assert.Equal(0, code);
        Assert.Contains("resuming at iteration 27 of 60", stderr);
        var resumed = Checkpoint.Load(half);
        Assert.Equal("60", resumed.Metadata["iteration"]);
        Assert.Equal(uninterrupted.Parameters.Data, resumed.Parameters.Data); // bit for bit
        // The samples after the resume point are the ones the whole run printed there too.
        var wholeLines = whole.ToString().Split('\n');
        Assert.Contains(stdout.Split('\n').First(l => l.Length > 0 && !l.StartsWith("Iteration", StringComparison.Ordinal) && !l.StartsWith("Trained", StringComparison.Ordinal)), wholeLines);
    }

    [Fact]
    public void AResumedKeepBestRunRemembersTheBestScoreAndThePatience()
    {
        using var dir = new CliRunner.TempDir();
        // Overfits, so it stops early after three evaluations without a better one.
        var options = ValidationTests.Options(dir.File("whole.safetensors")) with { KeepBest = true, Patience = 3, LogFormat = LogFormat.Text };
        var whole = new Trainer(options, TextWriter.Null, TextWriter.Null).Run();
        Assert.True(whole.StoppedEarly, "this run must stop early for the test to mean anything");
        int best = whole.Iterations - 3 * 25;
        Assert.Equal(best, whole.CheckpointIteration);

        // Stopped between two evaluations before the best (the model there may score better than the last one, but
        // the whole run made no evaluation there), and right after the one after the best, a worse one.
        foreach (var (stopAt, held) in new[] { (best - 10, best - 25), (best + 25, best) })
        {
            string half = dir.File($"stopped-at-{stopAt}.safetensors");
            using var stop = new CancellationTokenSource();
            var first = new Trainer(options with { Checkpoint = half }, TextWriter.Null, TextWriter.Null)
                .Run(cancel: stop.Token, progress: p => { if (p.Iteration == stopAt) stop.Cancel(); });
            Assert.True(first.Interrupted);
            Assert.Equal(stopAt, first.Iterations);
            Assert.Equal(held, first.CheckpointIteration); // the file holds the last evaluation's best, and the result says so

            // The resumed run starts there, keeps the best score (a worse evaluation does not replace the file) and the
            // patience, and stops where the whole run stopped, with the same model.
            var (code, stdout, stderr) = CliRunner.Run(output, "train", "--resume", half, "--device", "cpu");
            Assert.Equal(0, code);
            Assert.Contains($"resuming at iteration {held} of", stderr);
            Assert.Contains($"early stop: no better validation in 3 evaluations (best {whole.ValBitsPerChar:F4} bits/char at iteration {best})", stderr);
            Assert.Contains($"Trained {whole.Iterations - held} iterations (to iteration {whole.Iterations})", stdout + stderr);
            var resumed = Checkpoint.Load(half);
            Assert.Equal(best.ToString(System.Globalization.CultureInfo.InvariantCulture), resumed.Metadata["iteration"]);
            Assert.Equal(whole.Parameters.Data, resumed.Parameters.Data);
        }

        // The run has ended (stopped early): the file, which holds an earlier iteration, is not resumed again.
        CliRunner.AssertOneLineError(output, ["train", "--resume", options.Checkpoint!, "--device", "cpu", "--epochs", "40"], 2,
            $"stopped early at iteration {whole.Iterations} (--patience): resumed, it would stop there again");
    }

    [Fact]
    public void AFinishedRunIsResumedOnlyWithMoreIterationsAndStoresTheDataPathInFull()
    {
        using var dir = new CliRunner.TempDir();
        string data = dir.File("names.txt"), path = dir.File("run.safetensors");
        File.Copy(TestData.BundledNames, data);
        // Trained with the data given relative to the working folder: the checkpoint stores where it is.
        string relative = Path.GetRelativePath(Environment.CurrentDirectory, data);
        Assert.False(Path.IsPathRooted(relative));
        var (code, _, _) = CliRunner.Run(output, "train", "--data", relative, "--device", "cpu", "--hidden", "8", "--iterations", "20",
            "--sample-count", "0", "--checkpoint", path);
        Assert.Equal(0, code);
        Assert.Contains($"\"data\":{System.Text.Json.JsonSerializer.Serialize(data)}", Checkpoint.Load(path).Metadata["options"]);
        CliRunner.AssertOneLineError(output, ["train", "--resume", path, "--iterations", "10"], 2,
            $"--resume: the run in '{path}' ended at iteration 20, not before the 10 asked for; give more --iterations or --epochs to train further");
        CliRunner.AssertOneLineError(output, ["train", "--resume", path], 2, "ended at iteration 20, not before the 20 asked for");
        var resumed = CliRunner.Run(output, "train", "--resume", path, "--iterations", "25");
        Assert.Equal(0, resumed.Code);
        Assert.Equal("25", Checkpoint.Load(path).Metadata["iteration"]);
    }

    [Fact]
    public void StateFromBeforeTheBestScoreWasStoredResumesWithNoBestYet()
    {
        const string older = """{"Iteration":50,"SmoothedLoss":20.5,"SamplesDrawn":3,"Epoch":0,"Position":2,"Order":[1,0,2],"Random":["1","2","3","4"],"Updates":50}""";
        var state = RunState.FromMetadata(new Dictionary<string, string> { [RunState.Key] = older }, "old.safetensors");
        Assert.Equal(BestSoFar.None, state.Best);
        Assert.Equal(50, state.Iteration);

        var now = state with { Best = new BestSoFar(2.25, 40, 1) };
        Assert.Equal(now.Best, RunState.FromMetadata(new Dictionary<string, string> { [RunState.Key] = now.ToJson() }, "new.safetensors").Best);
    }

    [Fact]
    public void ResumingRefusesOptionsItWouldIgnore()
    {
        // Refused before the file is read: the run's options are the checkpoint's.
        CliRunner.AssertOneLineError(output, ["train", "--resume", "/nonexistent/run.safetensors", "--lr", "0.1", "--verbose", "--device", "cpu"], 2,
            "--lr, --verbose cannot be given with it (only --device, --threads, --iterations or --epochs)");
        var (code, _, stderr) = CliRunner.Run(output, "train", "--resume", "/nonexistent/run.safetensors", "--device", "cpu", "--threads", "1", "--iterations", "5");
        Assert.Equal(2, code);
        Assert.DoesNotContain("cannot be given", stderr);
    }

    [Theory]
    [InlineData("adam", false, "optimizer.v.by", false, "tensor optimizer.v.by is missing")]
    [InlineData("momentum", true, "state.carry", false, "tensor state.carry is missing")]
    [InlineData("adam", false, "optimizer.m.Waa", true, "tensor optimizer.m.Waa holds NaN or infinite values")]
    [InlineData("rmsprop", true, "state.carry", true, "tensor state.carry holds NaN or infinite values")]
    public void ResumingRefusesAMissingOrNonFiniteStateTensorTheRunNeeds(string optimizer, bool carry, string tensor, bool nan, string message)
    {
        // Before: a missing one resumed as zeros (not the run it was), a NaN one as a diverged run (exit 5).
        using var dir = new CliRunner.TempDir();
        string whole = dir.File("whole.safetensors");
        var options = new TrainOptions
        {
            Data = TestData.BundledNames,
            Device = "cpu",
            Threads = 1,
            Hidden = 4,
            Batch = carry ? 1 : 16,
            CarryState = carry,
            Optimizer = optimizer,
            Iterations = 10,
            SampleCount = 0,
            Checkpoint = whole,
        };
        new Trainer(options, TextWriter.Null, TextWriter.Null).Run();
        var file = SafeTensors.Read(whole);
        Assert.NotNull(file.Find(tensor));
        var damaged = nan
            ? file.Tensors.Select(t => t.Name == tensor ? t with { Data = t.Data.Select((x, i) => i == 0 ? float.NaN : x).ToArray() } : t)
            : file.Tensors.Where(t => t.Name != tensor);
        string path = dir.File("damaged.safetensors");
        SafeTensors.Write(path, damaged, file.Metadata);
        CliRunner.AssertOneLineError(output, ["train", "--resume", path, "--iterations", "20", "--device", "cpu", "--threads", "1"], 2, $"--resume '{path}': {message}");
    }

    [Fact]
    public void ResumingAFileWithoutStateSaysToUseInit()
    {
        using var dir = new CliRunner.TempDir();
        string path = dir.File("plain.safetensors");
        Checkpoint.Save(path, TestData.RandomParameters(new Model.ModelShape(4, 27), 1), GpuDinoRnn.Data.Vocabulary.Deserialize("\nabcdefghijklmnopqrstuvwxyz"),
            new Dictionary<string, string> { ["options"] = new TrainOptions { Hidden = 4 }.ToJson() });
        var (code, _, stderr) = CliRunner.Run(output, "train", "--resume", path);
        Assert.Equal(2, code);
        Assert.Contains("no training state", stderr);
        Assert.Contains("use --init", stderr);
    }
}
