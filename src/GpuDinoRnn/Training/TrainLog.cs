// The trainer's output: one fixed-format line per logged iteration (text), or one JSON object
// per line on standard output (jsonl), with samples and notes on standard error.
using System.Globalization;
using System.Text.Json;

namespace GpuDinoRnn.Training;

public sealed class TrainLog(LogFormat format, TextWriter stdout, TextWriter stderr)
{
    /// <summary>A skipped step's loss is NaN, a blown-up model's bits per character infinite: write them as "NaN", "Infinity".</summary>
    private static readonly JsonSerializerOptions Json = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    private TextWriter Human => format == LogFormat.Jsonl ? stderr : stdout;

    public void Info(string message) => stderr.WriteLine(message);

    /// <summary>
    /// Iteration numbers are 0-based: iteration 0 is the first update, as in the notebook. The text
    /// line starts exactly as the notebook's ("Iteration: N, Loss: smoothed").
    /// </summary>
    /// <param name="loss">This iteration's loss (summed over each name's steps, mean over the batch's names).</param>
    /// <param name="meanLoss">The mean loss of the iterations since the last log line.</param>
    /// <param name="smoothed">The recipe's smoothed loss.</param>
    /// <param name="gradNorm">‖g‖₂ of this iteration's gradient, before clipping.</param>
    /// <param name="lr">This iteration's learning rate.</param>
    public void Iteration(int iteration, float loss, double meanLoss, double smoothed, float gradNorm, float lr, double charsPerSecond, string device, int? launches)
    {
        if (format == LogFormat.Jsonl)
        {
            var record = new Dictionary<string, object>
            {
                ["iteration"] = iteration,
                ["loss"] = loss,
                ["mean_loss"] = Math.Round(meanLoss, 6),
                ["smoothed_loss"] = smoothed,
                ["grad_norm"] = gradNorm,
                ["lr"] = lr,
                ["chars_per_s"] = Math.Round(charsPerSecond, 1),
                ["device"] = device,
            };
            if (launches is not null)
                record["launches_per_step"] = launches.Value;
            stdout.WriteLine(JsonSerializer.Serialize(record, Json));
            return;
        }
        string extra = launches is null ? "" : $", {launches} launches/step";
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Iteration: {iteration}, Loss: {smoothed:F6}  (mean since last line {meanLoss:F4}, |g| {gradNorm:F3}, lr {lr:0.#########}, {charsPerSecond:N0} chars/s{extra})"));
    }

    public void Evaluation(int iteration, double valBitsPerChar, double best, int bestIteration)
    {
        if (format == LogFormat.Jsonl)
        {
            stdout.WriteLine(JsonSerializer.Serialize<Dictionary<string, object>>(new Dictionary<string, object>
            {
                ["event"] = "eval",
                ["iteration"] = iteration,
                ["val_bits_per_char"] = Math.Round(valBitsPerChar, 5),
                ["best_val_bits_per_char"] = Math.Round(best, 5),
                ["best_iteration"] = bestIteration,
            }, Json));
            return;
        }
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Validation after {iteration} iterations: {valBitsPerChar:F4} bits/char (best {best:F4} after {bestIteration})"));
    }

    /// <summary>One sampled name, written as it is drawn; EndSamples closes the group.</summary>
    public void Sample(string name) => Human.WriteLine(name);

    public void EndSamples() => Human.WriteLine();

    public void Summary(TrainResult r)
    {
        if (format == LogFormat.Jsonl)
        {
            var record = new Dictionary<string, object>
            {
                ["event"] = "summary",
                ["device"] = r.Device,
                ["iterations"] = r.Iterations,
                ["chars"] = r.Chars,
                ["train_seconds"] = Math.Round(r.TrainSeconds, 4),
                ["chars_per_s"] = Math.Round(r.Chars / Math.Max(r.TrainSeconds, 1e-9), 1),
                ["smoothed_loss"] = r.SmoothedLoss,
                ["train_bits_per_char"] = Math.Round(r.TrainBitsPerChar, 5),
            };
            if (r.ValBitsPerChar is double val)
                record["val_bits_per_char"] = Math.Round(val, 5);
            stdout.WriteLine(JsonSerializer.Serialize(record, Json));
            return;
        }
        string valText = r.ValBitsPerChar is double v ? string.Create(CultureInfo.InvariantCulture, $", validation {v:F4}") : "";
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Trained {r.Losses.Length} iterations{(r.Losses.Length == r.Iterations ? "" : $" (to iteration {r.Iterations})")} on {r.Device} in {r.TrainSeconds:F2} s ({r.Chars / Math.Max(r.TrainSeconds, 1e-9):N0} chars/s). " +
            $"Bits per character: training {r.TrainBitsPerChar:F4}{valText}."));
        stdout.WriteLine();
    }
}
