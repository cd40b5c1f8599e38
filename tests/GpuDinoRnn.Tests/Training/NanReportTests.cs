// A step with a non-finite loss is reported with the tensors whose gradient is not finite only
// when that is known: the device keeps the latest step's gradient alone, and losses are read
// back at log lines, so the earlier bad steps of a stretch cannot say which tensors were bad.
using GpuDinoRnn.Tests.Hardening;
using GpuDinoRnn.Tests.Reference;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Training;

public sealed class NanReportTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(1)]
    [InlineData(20)]
    public void OnlyTheLatestStepsBadTensorsAreNamed(int logEvery)
    {
        var (code, _, stderr) = CliRunner.Run(output, ["train", "--data", TestData.BundledNames, "--device", "cpu", "--hidden", "16",
            "--sample-count", "0", "--iterations", "20", "--optimizer", "sgd", "--lr", "1e37", "--clip", "0",
            "--log-every", logEvery.ToString(System.Globalization.CultureInfo.InvariantCulture), "--on-nan", "skip"]);
        Assert.Equal(0, code);
        var warnings = stderr.Split('\n').Where(l => l.StartsWith("warning: iteration", StringComparison.Ordinal)).ToList();
        int named = warnings.Count(l => l.Contains("non-finite gradient in", StringComparison.Ordinal));
        output.WriteLine($"--log-every {logEvery}: {warnings.Count} skipped steps, {named} naming tensors");
        Assert.True(warnings.Count >= 2, "the learning rate no longer makes steps blow up");
        if (logEvery == 1)
            Assert.Equal(warnings.Count, named); // each read is of the latest step
        else
            Assert.InRange(named, 0, 1);         // only the stretch's last step
    }
}
