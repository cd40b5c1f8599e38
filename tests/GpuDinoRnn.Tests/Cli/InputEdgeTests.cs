// Edges of the input a black-box probe found: checkpoint paths that are not regular files or
// whose folder is missing, huge or interrupted sampling, non-finite optimizer numbers, and
// messages that named the file twice or an option the verb does not have.
using System.Diagnostics;
using System.Runtime.InteropServices;
using GpuDinoRnn.Checkpoints;
using GpuDinoRnn.Tests.Hardening;
using GpuDinoRnn.Tests.Reference;
using GpuDinoRnn.Training;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Cli;

public partial class InputEdgeTests(ITestOutputHelper output)
{
    private static readonly string[] Quick = ["--data", TestData.BundledNames, "--device", "cpu", "--iterations", "2", "--hidden", "8", "--sample-count", "0"];

    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", name);

    [LibraryImport("libc", EntryPoint = "mkfifo", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int MkFifo(string path, uint mode);

    [SkippableFact]
    public void AFifoIsNotReplacedByTheCheckpoint()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "the file type is asked of Linux (statx)");
        using var dir = new CliRunner.TempDir();
        string fifo = dir.File("model.fifo");
        Assert.True(MkFifo(fifo, 0x1B6) == 0, $"mkfifo failed: errno {Marshal.GetLastPInvokeError()}"); // 0666
        // Refused before training, with --overwrite or without (it is no file to overwrite).
        CliRunner.AssertOneLineError(output, ["train", .. Quick, "--checkpoint", fifo, "--overwrite"], 2, $"--checkpoint '{fifo}' is a FIFO (named pipe), not a regular file");
        CliRunner.AssertOneLineError(output, ["train", .. Quick, "--checkpoint", fifo], 2, "is a FIFO (named pipe)");
        Assert.Equal("a FIFO (named pipe)", CheckpointTarget.SpecialFileKind(fifo)); // still there, still a FIFO
        Assert.False(File.Exists(CheckpointTarget.LockPath(fifo)));
    }

    [SkippableFact]
    public void AFifoGivenAsAModelToReadIsRefusedAtOnceNotWaitedOn()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "the file type is asked of Linux (statx)");
        using var dir = new CliRunner.TempDir();
        string fifo = dir.File("model.fifo");
        Assert.True(MkFifo(fifo, 0x1B6) == 0, $"mkfifo failed: errno {Marshal.GetLastPInvokeError()}");
        var run = Task.Run(() => CliRunner.Run(output, ["sample", "--model", fifo, "--count", "1"]));
        try
        {
            Assert.True(run.Wait(TimeSpan.FromSeconds(30)), "reading the FIFO waited for a writer");
        }
        finally
        {
            if (!run.IsCompleted)
                File.WriteAllText(fifo, ""); // a writer that closes at once: the reader gets end of file
        }
        var (code, _, stderr) = run.Result;
        Assert.Equal(2, code);
        Assert.Equal($"gpudinornn: error: checkpoint '{fifo}': is a FIFO (named pipe), not a file", stderr.Trim());
        // A link to a real checkpoint still reads (only writing over a link is refused).
        string real = dir.File("m.safetensors"), link = dir.File("link.safetensors");
        Assert.Equal(0, CliRunner.Run(output, ["train", .. Quick, "--checkpoint", real]).Code);
        File.CreateSymbolicLink(link, real);
        Assert.Equal(0, CliRunner.Run(output, ["sample", "--model", link, "--count", "2"]).Code);
    }

    [Fact]
    public void ASymbolicLinkIsNotReplacedByTheCheckpointNorItsTarget()
    {
        using var dir = new CliRunner.TempDir();
        string real = dir.File("real.safetensors"), link = dir.File("link.safetensors");
        File.WriteAllText(real, "the user's file");
        File.CreateSymbolicLink(link, real);
        CliRunner.AssertOneLineError(output, ["train", .. Quick, "--checkpoint", link, "--overwrite"], 2,
            $"--checkpoint '{link}' is a symbolic link (to '{real}'); name the file it points to");
        Assert.Equal(real, new FileInfo(link).LinkTarget);
        Assert.Equal("the user's file", File.ReadAllText(real));

        // --resume writes back to the file it continues: through a link it is refused the same way.
        File.Delete(real);
        Assert.Equal(0, CliRunner.Run(output, ["train", .. Quick, "--checkpoint", real]).Code);
        var before = File.ReadAllBytes(real);
        CliRunner.AssertOneLineError(output, ["train", "--resume", link, "--iterations", "4", "--device", "cpu"], 2, $"--resume '{link}' is a symbolic link");
        Assert.Equal(real, new FileInfo(link).LinkTarget);
        Assert.Equal(before, File.ReadAllBytes(real));
    }

    [Fact]
    public void ACheckpointInAMissingFolderIsOneLineBeforeTraining()
    {
        using var dir = new CliRunner.TempDir();
        string missing = Path.Combine(dir.Path, "nodir");
        CliRunner.AssertOneLineError(output, ["train", .. Quick, "--checkpoint", Path.Combine(missing, "x.safetensors")], 2,
            $"the folder '{missing}' does not exist");
        Assert.False(Directory.Exists(missing));
    }

    [Fact]
    public void SampleCountHasAnUpperLimit()
    {
        // Just over: without the limit this test draws them all, in half a minute, rather than never ending.
        CliRunner.AssertOneLineError(output, ["train", .. Quick[..^2], "--sample-count", "1000001"], 2, "--sample-count must be at most 1000000 (got 1000001)");
        new TrainOptions { SampleCount = 1_000_000 }.Validate(); // the limit itself is allowed
        // A run resumed from a checkpoint of before the limit keeps its count: --resume cannot change it.
        new TrainOptions { SampleCount = 5_000_000, Resume = "old.safetensors", Checkpoint = "old.safetensors" }.Validate();
    }

    /// <summary>Standard output that requests cancellation once the first sampled name is written.</summary>
    private sealed class CancelAtFirstName(CancellationTokenSource stop) : StringWriter
    {
        public override void WriteLine(string? value)
        {
            base.WriteLine(value);
            if (IsName(value))
                stop.Cancel();
        }
    }

    private static bool IsName(string? line) =>
        !string.IsNullOrEmpty(line) && !line.StartsWith("Iteration", StringComparison.Ordinal) && !line.StartsWith("Trained", StringComparison.Ordinal);

    [Theory]
    [InlineData(1, 3)] // the names drawn every iteration: the loop then stops before the next step
    [InlineData(1, 1)] // at the last iteration: the run has no step left, and counts as interrupted all the same
    [InlineData(0, 3)] // the names drawn at the end, after the checkpoint
    public void CancellingWhileSamplingStopsTheSampling(int sampleEvery, int iterations)
    {
        using var dir = new CliRunner.TempDir();
        using var stop = new CancellationTokenSource();
        var stdout = new CancelAtFirstName(stop);
        var stderr = new StringWriter();
        var options = new TrainOptions
        {
            Data = TestData.BundledNames,
            Device = "cpu",
            Threads = 1,
            Hidden = 8,
            Iterations = iterations,
            ValFraction = 0,
            SampleEvery = sampleEvery,
            SampleCount = 1_000_000,
            Checkpoint = dir.File("m.safetensors"),
        };
        var clock = Stopwatch.StartNew();
        var result = new Trainer(options, stdout, stderr).Run(cancel: stop.Token);
        int names = stdout.ToString().Split('\n').Count(IsName);
        output.WriteLine($"{clock.ElapsedMilliseconds} ms, {names} names\n{stderr}"); // not the names: a million would choke the test log
        Assert.True(result.Interrupted);
        Assert.Equal(sampleEvery == 0 ? iterations : 1, result.Iterations);
        Assert.Equal(1, names);
        Assert.Contains("sampling stopped after 1 of 1000000 names", stderr.ToString());
        Assert.Equal(result.Iterations, int.Parse(Checkpoint.Load(options.Checkpoint).Metadata["iteration"])); // written as on any interrupt
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task SigtermWhileDrawingTheLastNamesEndsTheRunWith130()
    {
        using var dir = new CliRunner.TempDir();
        string path = dir.File("m.safetensors");
        using var p = CliRunner.Start(["train", .. Quick[..^2], "--sample-count", "1000000", "--checkpoint", path]);
        var stderr = new System.Collections.Concurrent.ConcurrentQueue<string>();
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) stderr.Enqueue(e.Data); };
        // Continuations off the output reader's thread: WaitForExit() below waits for that reader.
        var sampling = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        bool trained = false;
        p.OutputDataReceived += (_, e) =>
        {
            trained |= e.Data?.StartsWith("Trained", StringComparison.Ordinal) == true;
            if (trained && IsName(e.Data))
                sampling.TrySetResult();
        };
        p.BeginErrorReadLine();
        p.BeginOutputReadLine();
        Assert.True(await Task.WhenAny(sampling.Task, Task.Delay(TimeSpan.FromSeconds(60))) == sampling.Task, "sampling did not start");
        CliRunner.Signal(p, CliRunner.SigTerm);
        Assert.True(p.WaitForExit(30_000), "the process went on sampling after SIGTERM");
        p.WaitForExit();
        output.WriteLine(string.Join("\n", stderr));
        Assert.Equal(130, p.ExitCode);
        Assert.Contains(stderr, l => l.StartsWith("interrupted at iteration 2; the model is in", StringComparison.Ordinal));
        Assert.Equal("2", Checkpoint.Load(path).Metadata["iteration"]);
    }

    [Theory]
    [InlineData("--eps", "Infinity", "--eps must be a positive number")]
    [InlineData("--eps", "1e400", "--eps must be a positive number")]
    [InlineData("--eps", "NaN", "--eps must be a positive number")]
    [InlineData("--eps", "0", "--eps must be a positive number")]
    [InlineData("--weight-decay", "Infinity", "--weight-decay must be 0 or more")]
    [InlineData("--weight-decay", "NaN", "--weight-decay must be 0 or more")]
    [InlineData("--momentum", "NaN", "--momentum, --beta1, --beta2 and --alpha must be in [0, 1)")]
    [InlineData("--beta1", "NaN", "--momentum, --beta1, --beta2 and --alpha must be in [0, 1)")]
    [InlineData("--beta2", "Infinity", "--momentum, --beta1, --beta2 and --alpha must be in [0, 1)")]
    [InlineData("--alpha", "Infinity", "--momentum, --beta1, --beta2 and --alpha must be in [0, 1)")]
    [InlineData("--lr-gamma", "NaN", "--lr-gamma in (0, 1]")]
    [InlineData("--min-lr", "Infinity", "--min-lr between 0 and --lr")]
    public void OptimizerNumbersMustBeFinite(string option, string value, string fragment) =>
        CliRunner.AssertOneLineError(output, ["train", .. Quick, option, value], 2, fragment);

    [Fact]
    public void ACheckpointWithoutItsVocabularyIsNamedOnce()
    {
        using var dir = new CliRunner.TempDir();
        var file = SafeTensors.Read(Fixture("numpy_written.safetensors"));
        string path = dir.File("novocab.safetensors");
        SafeTensors.Write(path, file.Tensors, file.Metadata.Where(kv => kv.Key != "vocab").ToDictionary());
        var (_, _, stderr) = CliRunner.Run(output, "sample", "--model", path);
        CliRunner.AssertOneLineError(output, ["sample", "--model", path], 2, $"checkpoint '{path}': metadata \"vocab\" is missing");
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(stderr, "checkpoint '"));
    }

    [Theory]
    [InlineData("eval")]
    [InlineData("sample")] // --data, the training names for the novelty report
    public void ANameTooLongForTheModelNamesNoOptionTheVerbLacks(string verb)
    {
        using var dir = new CliRunner.TempDir();
        string data = dir.File("long.txt");
        File.WriteAllText(data, "abc\n" + new string('a', 1001) + "\n");
        var (_, _, stderr) = CliRunner.Run(output, verb, "--model", Fixture("numpy_written.safetensors"), "--data", data);
        CliRunner.AssertOneLineError(output, [verb, "--model", Fixture("numpy_written.safetensors"), "--data", data], 2,
            "line 2 is 1001 characters long, more than 1000, the longest name the model was trained to read (train --max-name-length)");
        Assert.DoesNotContain("more than --max-name-length", stderr);
    }
}
