// `sample` prints each launch's names as they are drawn (a large --count needs no memory for
// them), stops on Ctrl-C after the names being drawn with a report of those printed (exit 130)
// or quietly when its reader is gone (| head, exit 141), and counts repeats among the first
// million names only.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using GpuDinoRnn.Tests.Hardening;
using GpuDinoRnn.Tests.Reference;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Cli;

public sealed class SampleStreamTests(ITestOutputHelper output)
{
    private static string TinyModel(CliRunner.TempDir dir)
    {
        string model = dir.File("m.safetensors");
        Assert.Equal(0, CliRunner.Run(null, "train", "--data", TestData.BundledNames, "--device", "cpu", "--iterations", "2", "--hidden", "8",
            "--sample-count", "0", "--checkpoint", model).Code);
        return model;
    }

    [SkippableFact]
    public async Task CtrlCStopsAfterTheNamesBeingDrawnAndKeepsThosePrinted()
    {
        Skip.IfNot(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS(), "sends SIGINT");
        using var dir = new CliRunner.TempDir();
        string model = TinyModel(dir);
        // 100 million names: hours of output had they been held back until the end, as before.
        using var p = CliRunner.Start("sample", "--model", model, "--count", "100000000", "--seed", "3");
        var names = new ConcurrentQueue<string>();
        var stderr = new ConcurrentQueue<string>();
        var first = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        p.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
                return;
            names.Enqueue(e.Data);
            first.TrySetResult();
        };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) stderr.Enqueue(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        try
        {
            Assert.True(await Task.WhenAny(first.Task, Task.Delay(TimeSpan.FromSeconds(60))) == first.Task, "no name was printed while drawing");
            CliRunner.Signal(p, CliRunner.SigInt);
            Assert.True(p.WaitForExit(30_000), "sampling went on after Ctrl-C");
        }
        finally
        {
            if (!p.HasExited)
                p.Kill(); // a failed test leaves no process drawing names for hours
        }
        p.WaitForExit(); // the output readers are done
        output.WriteLine(string.Join("\n", stderr));
        Assert.Equal(130, p.ExitCode);
        int n = names.Count;
        Assert.InRange(n, 1, 99_999_999);
        var lines = stderr.ToArray();
        Assert.Equal(3, lines.Length);
        Assert.Equal("stopping after the names being drawn; Ctrl-C again quits at once", lines[0]);
        Assert.StartsWith($"{n} names: ", lines[1]); // the report covers the names printed
        Assert.EndsWith($"; {Repeats(names, n)}% repeat an earlier name", lines[1]);
        Assert.Equal($"interrupted after {n} of 100000000 names", lines[2]);
        // The names printed are the run's first n, in order.
        var (code, whole, _) = CliRunner.Run(null, "sample", "--model", model, "--count", $"{n}", "--seed", "3");
        Assert.Equal(0, code);
        Assert.Equal(whole.Split('\n', StringSplitOptions.RemoveEmptyEntries), names);
    }

    [SkippableFact]
    public void AReaderThatStopsReadingStopsTheDrawing()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "a closed pipe is asked of Linux (poll)");
        Skip.IfNot(File.Exists("/bin/bash"), "runs `gpudinornn sample | head` in bash");
        using var dir = new CliRunner.TempDir();
        string model = TinyModel(dir);
        // .NET drops writes to a closed pipe without a word: the sampler must ask. Before, this
        // drew all 100 million names (about half an hour) into the closed pipe.
        var psi = new ProcessStartInfo("/bin/bash", ["-c", "set -o pipefail; \"$0\" sample --model \"$1\" --count 100000000 | head -3", CliRunner.Executable, model])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        try
        {
            Assert.True(p.WaitForExit(60_000), "the sampler went on drawing for a closed pipe");
        }
        finally
        {
            if (!p.HasExited)
                p.Kill(entireProcessTree: true);
        }
        output.WriteLine(stderr.Result);
        Assert.Equal(3, stdout.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.Equal("", stderr.Result); // quiet, as a Unix tool ended by SIGPIPE
        Assert.Equal(141, p.ExitCode); // pipefail: the sampler's own code
    }

    [Fact]
    public void RepeatsAreCountedAmongTheFirstMillionNames()
    {
        using var dir = new CliRunner.TempDir();
        string model = TinyModel(dir);
        // Names of at most 3 letters: many repeat, and a million is drawn in seconds.
        var (code, stdout, stderr) = CliRunner.Run(output, "sample", "--model", model, "--count", "1000010", "--max-length", "3");
        Assert.Equal(0, code);
        var names = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(1_000_010, names.Length);
        string report = stderr.Trim();
        Assert.EndsWith($"; {Repeats(names.Take(1_000_000), 1_000_000)}% of the first 1,000,000 repeat an earlier name", report);
        Assert.StartsWith("1000010 names: ", report);
    }

    [Fact]
    public void NovelGivesUpInOneLineWhenNoNameIsNew()
    {
        using var dir = new CliRunner.TempDir();
        string model = TinyModel(dir);
        // Names of one letter, and every letter a training name: no draw can be new.
        string letters = dir.File("letters.txt");
        File.WriteAllLines(letters, "abcdefghijklmnopqrstuvwxyz".Select(c => c.ToString()));
        CliRunner.AssertOneLineError(output, ["sample", "--model", model, "--novel", "--data", letters, "--max-length", "1", "--count", "3"], 2,
            "--novel: only 0 of 3 names were new after 608 draws; try a higher --temperature"); // 200 a name, in launches of 3 + 16
    }

    /// <summary>The share of names that repeat an earlier one, as the report prints it.</summary>
    private static string Repeats(IEnumerable<string> names, int n) =>
        (100.0 * (n - names.Distinct(StringComparer.Ordinal).Count()) / n).ToString("F1", CultureInfo.InvariantCulture);
}
