// The bench results as a bar chart of chars/s per device (ScottPlot, PNG).
using GpuDinoRnn.Training;

namespace GpuDinoRnn.Cli;

public static class BenchPlot
{
    public static void Save(string path, IReadOnlyList<BenchResult> results, BenchJob job)
    {
        var plot = new ScottPlot.Plot();
        var bars = plot.Add.Bars(results.Select(r => r.CharsPerSecond).ToArray());
        bars.ValueLabelStyle.FontSize = 12;
        foreach (var (bar, r) in bars.Bars.Zip(results))
            bar.Label = $"{r.CharsPerSecond:N0}";
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, results.Count).Select(i => (double)i).ToArray(), results.Select(r => r.Label).ToArray());
        plot.Axes.Margins(bottom: 0);
        plot.YLabel("characters per second");
        plot.Title($"GpuDinoRnn training speed ({job.Describe()}, {job.Steps} steps)");
        plot.SavePng(path, 800, 500);
    }
}
