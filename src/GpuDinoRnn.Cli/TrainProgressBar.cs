// train on a terminal: a Spectre.Console progress bar (loss, chars/s, ETA) on standard error,
// with the log lines printed above it. Redirected output gets the plain lines only.
using GpuDinoRnn.Training;
using Spectre.Console;

namespace GpuDinoRnn.Cli;

public static class TrainProgressBar
{
    public static TrainResult Run(TrainOptions options, TextWriter stdout, CancellationToken cancel)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        var lines = new LineWriter(console);
        // Lines meant for a terminal go through the live display so they land above the bar.
        var output = Console.IsOutputRedirected ? stdout : lines;
        TrainResult? result = null;
        console.Progress()
            .AutoClear(true)
            .HideCompleted(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("training");
                result = new Trainer(options, output, lines).Run(cancel: cancel, progress: p =>
                {
                    task.MaxValue = p.Total;
                    task.Value = p.Iteration;
                    task.Description = Describe(p, console.Profile.Width);
                });
            });
        return result!;
    }

    /// <summary>
    /// The text left of the bar, short enough that the bar's row fits the terminal (a row wider than
    /// the terminal wraps, and the live display then leaves pieces of old bars behind).
    /// </summary>
    internal static string Describe(TrainProgress p, int width)
    {
        string iteration = $"iteration {p.Iteration:N0}/{p.Total:N0}";
        if (double.IsNaN(p.MeanLoss))
            return iteration;
        string speed = $"loss {p.MeanLoss:F3} · {p.CharsPerSecond:N0} chars/s";
        return width >= 110 ? $"{iteration} · {speed}" : width >= 80 ? speed : $"loss {p.MeanLoss:F3}";
    }

    /// <summary>The line broken at spaces into rows of at most width characters (a longer word is cut).</summary>
    internal static IEnumerable<string> Rows(string line, int width)
    {
        width = Math.Max(width, 20);
        while (line.Length > width)
        {
            int cut = line.LastIndexOf(' ', width);
            cut = cut > 0 ? cut : width;
            yield return line[..cut];
            line = line[cut..].TrimStart(' ');
        }
        yield return line;
    }

    /// <summary>A TextWriter that hands whole lines to the Spectre console as plain text.</summary>
    private sealed class LineWriter(IAnsiConsole console) : TextWriter
    {
        private readonly System.Text.StringBuilder _line = new();

        public override System.Text.Encoding Encoding => System.Text.Encoding.UTF8;

        public override void Write(char value)
        {
            if (value == '\n')
            {
                // One row per call: Spectre's live display puts the bar back one row too low after a line it wrapped.
                foreach (var row in Rows(_line.ToString(), console.Profile.Width - 1))
                    console.WriteLine(row);
                _line.Clear();
            }
            else if (value != '\r')
            {
                _line.Append(value);
            }
        }
    }
}
