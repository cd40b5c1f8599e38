// Faults must never lose a user's model: a process killed while checkpointing, Ctrl-C, a full
// disk, divergence, two runs on one checkpoint path. The signal tests run the real program.
using System.Diagnostics;
using GpuDinoRnn.Checkpoints;
using GpuDinoRnn.Tests.Reference;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Hardening;

public class FaultTests(ITestOutputHelper output)
{
    private static string[] LongRun(string checkpoint, int every) =>
    [
        "train", "--data", TestData.BundledNames, "--device", "cpu", "--threads", "1", "--hidden", "64", "--batch", "8",
        "--iterations", "100000000", "--log-every", "50", "--sample-count", "0", "--val-fraction", "0",
        "--checkpoint", checkpoint, "--checkpoint-every", every.ToString(), "--overwrite",
    ];

    /// <summary>Waits until the process has printed a line containing text on standard error.</summary>
    private static bool WaitForStderr(Process p, string text, TimeSpan timeout)
    {
        var seen = new TaskCompletionSource();
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data?.Contains(text) == true)
                seen.TrySetResult();
        };
        p.BeginErrorReadLine();
        p.BeginOutputReadLine();
        return seen.Task.Wait(timeout);
    }

    private static async Task<bool> Within(Task task, TimeSpan timeout) => await Task.WhenAny(task, Task.Delay(timeout)) == task;

    [SkippableTheory]
    [InlineData(">/dev/full", "cannot write the output: No space left on device")]
    [InlineData(">/dev/full 2>/dev/full", null)] // nowhere left to say it: the exit code does
    [InlineData(">&-", "cannot write the output: Bad file descriptor")] // closed: .NET throws UnauthorizedAccessException
    [InlineData(">&- 2>&-", null)]
    public void AStandardStreamThatCannotBeWrittenIsAWriteErrorNotAStackTrace(string redirect, string? message)
    {
        Skip.IfNot(File.Exists("/dev/full") && File.Exists("/bin/sh"), "needs /dev/full and /bin/sh");
        var psi = new ProcessStartInfo("/bin/sh", ["-c", $"exec \"$0\" devices {redirect}", CliRunner.Executable])
        {
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var p = Process.Start(psi)!;
        string stderr = p.StandardError.ReadToEnd();
        Assert.True(p.WaitForExit(60_000));
        output.WriteLine($"exit {p.ExitCode}: {stderr}");
        Assert.Equal(4, p.ExitCode);
        Assert.DoesNotContain("   at ", stderr);
        Assert.Equal(message is null ? "" : $"gpudinornn: error: {message}\n", stderr);
    }

    [Fact]
    public async Task RunningOutOfHostMemoryIsOneLineNotAnAbort()
    {
        // A container's memory limit caps .NET's heap as this does (at three quarters of the limit).
        var psi = new ProcessStartInfo(CliRunner.Executable,
            ["train", "--device", "cpu", "--cell", "lstm", "--layers", "2", "--hidden", "2048", "--batch", "1", "--iterations", "1", "--sample-count", "0"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            Environment = { ["DOTNET_GCHeapHardLimit"] = "0x10000000" }, // 256 MiB; the model's weights alone take 200 MB
        };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        string stderr = p.StandardError.ReadToEnd();
        Assert.True(p.WaitForExit(60_000));
        output.WriteLine($"exit {p.ExitCode}: {stderr}");
        Assert.Equal(UserError.DeviceError, p.ExitCode);
        Assert.EndsWith("gpudinornn: error: out of memory: the model, batch or data need more memory than the program may use " +
                        "(a container's limit caps it); try a smaller --hidden, --layers or --batch\n", stderr);
        Assert.DoesNotContain("   at ", stderr);
        Assert.Equal("", await stdout);
    }

    [Fact]
    public void KilledWhileCheckpointingLeavesALoadableCheckpoint()
    {
        using var dir = new CliRunner.TempDir();
        string path = dir.File("model.safetensors");
        var random = new Random(12);
        int killedWithFile = 0;
        for (int round = 0; round < 6; round++)
        {
            using var p = CliRunner.Start(LongRun(path, every: 3)); // a checkpoint every few milliseconds
            Assert.True(WaitForStderr(p, "checkpoint written", TimeSpan.FromSeconds(30)), "no checkpoint was written");
            Thread.Sleep(random.Next(5, 400));
            p.Kill(); // SIGKILL
            p.WaitForExit();
            var model = Checkpoint.Load(path); // throws if the file were torn
            Assert.True(int.Parse(model.Metadata["iteration"]) > 0);
            killedWithFile++;
        }
        output.WriteLine($"{killedWithFile} kills, each left a checkpoint that loads; files: {string.Join(", ", Directory.GetFiles(dir.Path).Select(Path.GetFileName))}");
        Assert.Equal(6, killedWithFile);
    }

    [Fact]
    public async Task CtrlCWritesAFinalCheckpointAndSaysWhere()
    {
        using var dir = new CliRunner.TempDir();
        string path = dir.File("model.safetensors");
        using var p = CliRunner.Start(LongRun(path, every: 1_000_000));
        var stderr = new System.Collections.Concurrent.ConcurrentQueue<string>();
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) stderr.Enqueue(e.Data); };
        // Continuations off the output reader's thread: WaitForExit() below waits for that reader.
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        p.OutputDataReceived += (_, e) => { if (e.Data?.StartsWith("Iteration: 50,", StringComparison.Ordinal) == true) started.TrySetResult(); };
        p.BeginErrorReadLine();
        p.BeginOutputReadLine();
        Assert.True(await Within(started.Task, TimeSpan.FromSeconds(30)), "training did not start");
        Assert.False(File.Exists(path));
        CliRunner.Signal(p, CliRunner.SigInt);
        Assert.True(p.WaitForExit(30_000), "the process did not stop after Ctrl-C");
        p.WaitForExit();
        output.WriteLine(string.Join("\n", stderr));
        Assert.Equal(130, p.ExitCode);
        Assert.Contains(stderr, l => l.StartsWith("interrupted at iteration", StringComparison.Ordinal) && l.Contains(path));
        var model = Checkpoint.Load(path);
        Assert.True(int.Parse(model.Metadata["iteration"]) >= 50);
        Assert.False(File.Exists(CheckpointTarget.LockPath(path)));
    }

    [Fact]
    public async Task ASecondCtrlCQuitsAtOnce()
    {
        using var dir = new CliRunner.TempDir();
        string path = dir.File("model.safetensors");
        // After the first Ctrl-C stops the loop ("interrupted after …"), measuring the training bits per
        // character of 1,325 names at H 2048 on one thread takes seconds before the checkpoint is written:
        // the second Ctrl-C comes in that time, so an orderly end would show as its line and its file.
        string[] args = ["train", "--data", TestData.BundledNames, "--device", "cpu", "--threads", "1", "--hidden", "2048",
            "--batch", "1", "--iterations", "100000000", "--log-every", "1", "--sample-count", "0", "--val-fraction", "0", "--checkpoint", path];
        using var p = CliRunner.Start(args);
        var stderr = new System.Collections.Concurrent.ConcurrentQueue<string>();
        // Continuations run elsewhere: run inline, the rest of the test would run on a reader's thread,
        // and WaitForExit(), which waits for that reader to finish, would wait for ever.
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var stopped = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        p.OutputDataReceived += (_, e) => { if (e.Data?.StartsWith("Iteration: 1,", StringComparison.Ordinal) == true) started.TrySetResult(); };
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
                return;
            stderr.Enqueue(e.Data);
            if (e.Data.StartsWith("interrupted after ", StringComparison.Ordinal))
                stopped.TrySetResult();
        };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        Assert.True(await Within(started.Task, TimeSpan.FromSeconds(60)), "training did not start");
        CliRunner.Signal(p, CliRunner.SigInt);
        Assert.True(await Within(stopped.Task, TimeSpan.FromSeconds(60)), "the first Ctrl-C did not stop the training loop");
        Assert.False(p.HasExited, "the run ended before the second Ctrl-C could come");
        CliRunner.Signal(p, CliRunner.SigInt);
        var clock = Stopwatch.StartNew();
        Assert.True(p.WaitForExit(60_000), "a second Ctrl-C did not end the process");
        p.WaitForExit(); // the output read to its end
        output.WriteLine($"ended {clock.ElapsedMilliseconds} ms after the second Ctrl-C, exit code {p.ExitCode}\n{string.Join("\n", stderr)}");
        Assert.NotEqual(0, p.ExitCode);
        // Ended at once: not the first Ctrl-C's orderly end, which writes the checkpoint and says so.
        Assert.DoesNotContain(stderr, l => l.StartsWith("interrupted at iteration", StringComparison.Ordinal));
        Assert.False(File.Exists(path), "the checkpoint was written: the run went on to the first Ctrl-C's orderly end");
    }

    [Fact]
    public void DivergenceStopsCleanlyAndKeepsTheLastGoodCheckpoint()
    {
        using var dir = new CliRunner.TempDir();
        string path = dir.File("model.safetensors");
        string[] common = ["--data", TestData.BundledNames, "--device", "cpu", "--hidden", "16", "--sample-count", "0"];
        Assert.Equal(0, CliRunner.Run(output, ["train", .. common, "--iterations", "20", "--checkpoint", path]).Code);
        var good = File.ReadAllBytes(path);

        var (code, _, stderr) = CliRunner.Run(output, ["train", .. common, "--init", path, "--checkpoint", path, "--overwrite",
            "--iterations", "50", "--lr", "1e37", "--clip", "0", "--log-every", "1"]);
        Assert.Equal(UserError.Diverged, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("gpudinornn: error:", StringComparison.Ordinal));
        Assert.Contains("training diverged at iteration", line);
        Assert.Contains("was left as it was", line);
        Assert.Equal(good, File.ReadAllBytes(path));
    }

    [Fact]
    public void OnNanSkipLogsTheBadStepsAndGoesOn()
    {
        using var dir = new CliRunner.TempDir();
        string path = dir.File("model.safetensors");
        var (code, stdout, stderr) = CliRunner.Run(output, ["train", "--data", TestData.BundledNames, "--device", "cpu", "--hidden", "16",
            "--sample-count", "0", "--iterations", "20", "--optimizer", "sgd", "--lr", "1e37", "--clip", "0", "--log-every", "1",
            "--on-nan", "skip", "--log-format", "jsonl", "--checkpoint", path]);
        Assert.Equal(0, code);
        var skipped = stderr.Split('\n').Count(l => l.StartsWith("warning: iteration", StringComparison.Ordinal) && l.EndsWith("the step was not applied, training goes on", StringComparison.Ordinal));
        output.WriteLine($"{skipped} steps skipped");
        Assert.InRange(skipped, 1, 19);
        Assert.Contains("\"event\":\"summary\"", stdout);
        Assert.All(Checkpoint.Load(path).Parameters.Data, x => Assert.True(float.IsFinite(x))); // the bad steps were never applied
    }

    [Fact]
    public void AnExistingCheckpointNeedsOverwriteAndTwoRunsCannotShareAPath()
    {
        using var dir = new CliRunner.TempDir();
        string path = dir.File("model.safetensors");
        string[] run = ["train", "--data", TestData.BundledNames, "--device", "cpu", "--hidden", "8", "--iterations", "3", "--sample-count", "0", "--checkpoint", path];
        Assert.Equal(0, CliRunner.Run(output, run).Code);
        var before = File.ReadAllBytes(path);

        var (code, _, stderr) = CliRunner.Run(output, run);
        Assert.Equal(2, code);
        Assert.Contains("already exists; pass --overwrite", stderr);
        Assert.Equal(before, File.ReadAllBytes(path));

        string stale = path + ".tmp-0123456789ab"; // what a run killed mid-write leaves
        File.WriteAllText(stale, "half a checkpoint");
        using (CheckpointTarget.Claim(path, overwrite: true)) // another run holds the path
        {
            (code, _, stderr) = CliRunner.Run(output, [.. run, "--overwrite"]);
            Assert.Equal(2, code);
            Assert.Contains("another run is writing", stderr);
        }
        Assert.False(File.Exists(stale), "the holder of the lock removes stale temporary files");
        Assert.Equal(0, CliRunner.Run(output, [.. run, "--overwrite", "--seed", "5"]).Code);
        Assert.NotEqual(before, File.ReadAllBytes(path));
    }

    [SkippableTheory]
    [InlineData("--checkpoint-every", 2)]
    // The best model's write fails at each better evaluation; the run stops early (lr 1 overfits at once)
    // with an older model in the file, so it must try once more at the end and fail, not exit 0.
    [InlineData("--keep-best", 2)]
    public void AFullDiskKeepsTheOldCheckpointAndTrainingGoesOn(string mode, int warnings)
    {
        Skip.IfNot(Environment.UserName == "root", "mounting a small tmpfs needs root");
        using var dir = new CliRunner.TempDir();
        string mount = dir.File("disk");
        Directory.CreateDirectory(mount);
        Process? mounted = null;
        try
        {
            mounted = Process.Start("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mount]);
            mounted?.WaitForExit();
        }
        catch (System.ComponentModel.Win32Exception)
        {
            // no mount program
        }
        Skip.If(mounted is null || mounted.ExitCode != 0, "could not mount a tmpfs here");
        try
        {
            string path = Path.Combine(mount, "model.safetensors");
            string[] common = ["--data", TestData.BundledNames, "--device", "cpu", "--hidden", "64", "--sample-count", "0"];
            Assert.Equal(0, CliRunner.Run(output, ["train", .. common, "--iterations", "5", "--checkpoint", path]).Code);
            var good = File.ReadAllBytes(path);
            // Fill the disk.
            using (var filler = new FileStream(Path.Combine(mount, "filler"), FileMode.Create))
            {
                var block = new byte[4096];
                try
                {
                    while (true)
                        filler.Write(block);
                }
                catch (IOException)
                {
                }
            }
            string[] run = mode == "--keep-best"
                ? ["--keep-best", "--eval-every", "10", "--patience", "1", "--lr", "1", "--optimizer", "sgd", "--iterations", "600"]
                : ["--iterations", "30", "--checkpoint-every", "10"];
            var (code, _, stderr) = CliRunner.Run(output, ["train", .. common, "--init", path, "--checkpoint", path, "--overwrite", .. run]);
            Assert.Equal(UserError.WriteError, code);
            var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(warnings, lines.Count(l => l.StartsWith("warning: ", StringComparison.Ordinal) && l.Contains("training goes on")));
            if (mode == "--keep-best")
                Assert.Contains(lines, l => l.StartsWith("keeping the best model", StringComparison.Ordinal));
            Assert.Contains("gpudinornn: error:", lines[^1]);
            Assert.Contains(path, lines[^1]);
            Assert.Equal(good, File.ReadAllBytes(path));
            Assert.DoesNotContain(Directory.GetFiles(mount), f => f.Contains(".tmp", StringComparison.Ordinal));
        }
        finally
        {
            Process.Start("umount", [mount]).WaitForExit();
        }
    }
}
