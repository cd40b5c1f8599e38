// `gpudinornn bench` end to end on the devices CI has: the table, the files, and the same job
// giving the same final loss on every device (a fast wrong device shows).
using System.Globalization;
using System.Text.Json;
using GpuDinoRnn.Tests.Hardening;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Cli;

public class BenchTests(ITestOutputHelper output)
{
    [Fact]
    public void BenchTimesEveryDeviceAndWritesJsonCsvAndAPlot()
    {
        using var dir = new CliRunner.TempDir();
        string json = dir.File("b.json"), plot = dir.File("b.png");
        var (code, stdout, stderr) = CliRunner.Run(output, "bench", "--devices", "cpu,ilgpu-cpu", "--hidden", "12", "--batch", "4",
            "--steps", "4", "--warm-up", "1", "--repetitions", "2", "--threads", "2", "--json", json, "--plot", plot);
        output.WriteLine(stdout);
        Assert.Equal(0, code);
        Assert.Contains("cpu (2 threads)", stdout);
        Assert.Contains("ilgpu-cpu", stdout);

        var results = Results(json);
        Assert.Equal(["cpu", "ilgpu-cpu"], results.Select(r => r.GetProperty("device_id").GetString()));
        var job = JsonDocument.Parse(File.ReadAllText(json)).RootElement.GetProperty("job");
        Assert.Equal(12, job.GetProperty("hidden").GetInt32());
        Assert.Equal(1, job.GetProperty("warm_up").GetInt32());
        Assert.Equal("rnn", job.GetProperty("cell").GetString());
        Assert.All(results, r => Assert.True(r.GetProperty("chars_per_s").GetDouble() > 0));
        Assert.Equal(0, results[0].GetProperty("launches_per_step").GetInt32());
        Assert.True(results[1].GetProperty("launches_per_step").GetInt32() > 0);
        double cpuLoss = results[0].GetProperty("final_loss").GetDouble(), gpuLoss = results[1].GetProperty("final_loss").GetDouble();
        Assert.Equal(cpuLoss, gpuLoss, cpuLoss * 1e-4);

        var csv = File.ReadAllLines(Path.ChangeExtension(plot, ".csv")); // always written beside the plot
        Assert.Equal(3, csv.Length);
        Assert.StartsWith("device_id,", csv[0]);
        Assert.Equal(cpuLoss, double.Parse(csv[1].Split(',')[^1], CultureInfo.InvariantCulture), 1e-6);
        if (stderr.Contains("could not be drawn"))
            output.WriteLine("no native graphics here: " + stderr);
        else
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(plot)[..4]);
    }

    [Fact]
    public void AStackedLstmJobEndsWithTheSameLossOnEveryDevice()
    {
        using var dir = new CliRunner.TempDir();
        string json = dir.File("b.json");
        var (code, stdout, _) = CliRunner.Run(output, "bench", "--devices", "cpu,ilgpu-cpu", "--cell", "lstm", "--layers", "2", "--hidden", "8",
            "--batch", "4", "--steps", "3", "--warm-up", "1", "--repetitions", "1", "--threads", "2", "--json", json);
        Assert.Equal(0, code);
        var results = Results(json);
        double cpuLoss = results[0].GetProperty("final_loss").GetDouble(), gpuLoss = results[1].GetProperty("final_loss").GetDouble();
        output.WriteLine($"final loss: cpu {cpuLoss}, ilgpu-cpu {gpuLoss}");
        Assert.Equal(cpuLoss, gpuLoss, cpuLoss * 1e-4);
        Assert.Equal(12, results[1].GetProperty("launches_per_step").GetInt32()); // 3L + 6
    }

    [Fact]
    public void AListOfThreadCountsTimesCpuAtEachInTurnWithTheSameResult()
    {
        using var dir = new CliRunner.TempDir();
        string json = dir.File("b.json"), csv = dir.File("b.csv");
        var (code, stdout, stderr) = CliRunner.Run(output, "bench", "--devices", "cpu", "--hidden", "64", "--batch", "32",
            "--steps", "3", "--warm-up", "1", "--repetitions", "3", "--threads", "1,2", "--json", json, "--csv", csv);
        output.WriteLine(stdout + stderr);
        Assert.Equal(0, code);
        int two = Math.Min(2, Environment.ProcessorCount); // a one-core machine runs cpu on one thread
        Assert.Contains("cpu (1 thread)", stdout);
        Assert.Contains(two == 2 ? "cpu (2 threads)" : "cpu (1 thread)", stdout);

        var results = Results(json);
        Assert.Equal([1, two], results.Select(r => r.GetProperty("threads").GetInt32()));
        // The thread count never changes the cpu backend's bits.
        Assert.Equal(results[0].GetProperty("final_loss").GetDouble(), results[1].GetProperty("final_loss").GetDouble());
        Assert.Equal(["1", $"{two}"], File.ReadAllLines(csv).Skip(1).Select(line => line.Split(',')[1]));

        // Turns: every repetition of round r starts after every one of round r − 1 has ended, and
        // round r starts r places down the list.
        double[][] starts = results.Select(r => Doubles(r, "repetition_start_s")).ToArray();
        double[][] seconds = results.Select(r => Doubles(r, "seconds_per_repetition")).ToArray();
        for (int r = 0; r < 3; r++)
        {
            int first = r % 2, second = 1 - first;
            Assert.True(starts[first][r] + seconds[first][r] <= starts[second][r], $"round {r + 1}: {first} then {second}");
            if (r > 0)
                Assert.True(starts[second][r - 1] + seconds[second][r - 1] <= starts[first][r], $"round {r + 1} after round {r}");
        }
        Assert.Equal(3, stderr.Split('\n').Count(line => line.StartsWith("bench: round ", StringComparison.Ordinal)));
    }

    [Theory]
    [InlineData("0")]   // index 0 of `devices` is cpu
    [InlineData("CPU")]
    public void ADeviceGivenByIndexOrInCapitalsIsTheDeviceOfThatId(string devices)
    {
        var (code, stdout, _) = CliRunner.Run(output, "bench", "--devices", devices, "--hidden", "64", "--batch", "32",
            "--steps", "2", "--warm-up", "1", "--repetitions", "1", "--threads", "1,2");
        Assert.Equal(0, code);
        Assert.Contains("cpu (1 thread)", stdout);
        Assert.Contains(Environment.ProcessorCount > 1 ? "cpu (2 threads)" : "cpu (1 thread)", stdout);
        // The × cpu column has the first row as its 1.00.
        Assert.Matches(@"cpu \(1 thread\)[^\n]*│ 1\.00 ", stdout);
    }

    /// <summary>The rows of a --json file.</summary>
    private static List<JsonElement> Results(string json) =>
        JsonDocument.Parse(File.ReadAllText(json)).RootElement.GetProperty("results").EnumerateArray().ToList();

    private static double[] Doubles(JsonElement e, string name) =>
        e.GetProperty(name).EnumerateArray().Select(x => x.GetDouble()).ToArray();

    [Fact]
    public void BadBenchOptionsAreOneLineErrors()
    {
        var (code, _, stderr) = CliRunner.Run(output, "bench", "--devices", "cpu", "--steps", "0");
        Assert.Equal(2, code);
        Assert.Contains("bench: --hidden, --batch, --steps", stderr);
        (code, _, stderr) = CliRunner.Run(output, "bench", "--devices", "cpu", "--threads", "1,-2");
        Assert.Equal(2, code);
        Assert.Contains("--threads at least 0", stderr);
        (code, _, stderr) = CliRunner.Run(output, "bench", "--devices", "quantum", "--steps", "1");
        Assert.Equal(2, code);
        Assert.Contains("device 'quantum' is not present", stderr);
        CliRunner.AssertOneLineError(output, ["bench", "--devices", ""], 2, "bench: --devices names no device");
        CliRunner.AssertOneLineError(output, ["bench", "--devices", "cpu, CPU"], 2, "bench: --devices names cpu twice");
        CliRunner.AssertOneLineError(output, ["bench", "--devices", "0,cpu"], 2, "bench: --devices names cpu twice");
        CliRunner.AssertOneLineError(output, ["bench", "--devices", "All,cpu"], 2, "bench: --devices 'All,cpu': all is every device already");
        CliRunner.AssertOneLineError(output, ["bench", "--devices", "cpu", "--json", ""], 2, "bench: --json needs a file name");
    }

    [Fact]
    public void OutputPathsThatCannotBeWrittenAreRefusedBeforeTheTiming()
    {
        using var dir = new CliRunner.TempDir();
        string folder = dir.File("results");
        Directory.CreateDirectory(folder);
        string[] job = ["bench", "--devices", "cpu", "--hidden", "8", "--batch", "4", "--steps", "2", "--warm-up", "1", "--repetitions", "1"];
        foreach (string option in new[] { "--json", "--csv", "--plot" })
        {
            var (code, _, stderr) = CliRunner.Run(output, [.. job, option, folder]);
            Assert.Equal(2, code);
            Assert.Equal($"gpudinornn: error: bench: {option} '{folder}' is a directory", Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
            string missing = Path.Combine(dir.File("nowhere"), "b.out");
            (code, _, stderr) = CliRunner.Run(output, [.. job, option, missing]);
            Assert.Equal(2, code);
            // The plot's CSV goes beside it: that folder is the one named.
            Assert.Equal($"gpudinornn: error: bench: {(option == "--plot" ? "the plot's CSV" : option)} '{(option == "--plot" ? Path.ChangeExtension(missing, ".csv") : missing)}': the folder '{dir.File("nowhere")}' does not exist",
                Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
        }
    }

    [SkippableFact]
    public void APlotThatCannotBeWrittenIsAWriteErrorAndTheNumbersAreInTheCsv()
    {
        Skip.IfNot(Directory.Exists("/proc/self"), "needs Linux's /proc, a folder nobody can create files in");
        using var dir = new CliRunner.TempDir();
        string csv = dir.File("b.csv");
        var (code, _, stderr) = CliRunner.Run(output, "bench", "--devices", "cpu", "--hidden", "8", "--batch", "4", "--steps", "2", "--warm-up", "1",
            "--repetitions", "1", "--csv", csv, "--plot", "/proc/b.png");
        Assert.Equal(4, code);
        var error = Assert.Single(stderr.Split('\n'), l => l.Contains("error"));
        Assert.StartsWith("gpudinornn: error: bench: cannot write the plot '/proc/b.png'", error);
        Assert.EndsWith($"(the numbers are in '{csv}')", error);
        Assert.Equal(2, File.ReadAllLines(csv).Length); // the header and cpu's row
    }
}
