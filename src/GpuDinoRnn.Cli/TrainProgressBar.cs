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
                    task.Description = double.IsNaN(p.MeanLoss)
                        ? $"iteration {p.Iteration:N0}/{p.Total:N0}"
                        : $"iteration {p.Iteration:N0}/{p.Total:N0} · loss {p.MeanLoss:F3} · {p.CharsPerSecond:N0} chars/s";
                });
            });
        return result!;
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
                console.WriteLine(_line.ToString());
                _line.Clear();
            }
            else if (value != '\r')
            {
                _line.Append(value);
            }
        }
    }
}
