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

        var results = JsonDocument.Parse(File.ReadAllText(json)).RootElement.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(["cpu", "ilgpu-cpu"], results.Select(r => r.GetProperty("device_id").GetString()));
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
        var results = JsonDocument.Parse(File.ReadAllText(json)).RootElement.GetProperty("results").EnumerateArray().ToList();
        double cpuLoss = results[0].GetProperty("final_loss").GetDouble(), gpuLoss = results[1].GetProperty("final_loss").GetDouble();
        output.WriteLine($"final loss: cpu {cpuLoss}, ilgpu-cpu {gpuLoss}");
        Assert.Equal(cpuLoss, gpuLoss, cpuLoss * 1e-4);
        Assert.Equal(12, results[1].GetProperty("launches_per_step").GetInt32()); // 3L + 6
    }

    [Fact]
    public void BadBenchOptionsAreOneLineErrors()
    {
        var (code, _, stderr) = CliRunner.Run(output, "bench", "--devices", "cpu", "--steps", "0");
        Assert.Equal(2, code);
        Assert.Contains("bench: --hidden, --batch, --steps", stderr);
        (code, _, stderr) = CliRunner.Run(output, "bench", "--devices", "quantum", "--steps", "1");
        Assert.Equal(2, code);
        Assert.Contains("device 'quantum' is not present", stderr);
    }
}
