// `gpudinornn sample`: names from a checkpoint, with temperature, top-k/top-p, a prefix, length
// limits, an optional novelty filter, and a report of how novel and how repeated they are; drawn
// on the host's cores or, with --device, on a GPU.
using System.Globalization;
using System.Text.Json;
using GpuDinoRnn.Backends;
using GpuDinoRnn.Checkpoints;
using GpuDinoRnn.Data;
using GpuDinoRnn.Sampling;
using GpuDinoRnn.Training;

namespace GpuDinoRnn.Cli;

public static class SampleCommand
{
    /// <summary>With --novel, give up after this many draws per name asked for.</summary>
    private const int MaxDrawsPerName = 200;

    /// <summary>Repeats are counted among this many names at most, so that the names seen fit in memory (about 100 MB).</summary>
    private const int RepeatWindow = 1_000_000;

    /// <param name="cancel">Stops the drawing after the names being drawn (Ctrl-C): the report covers those printed, and the exit code is 130.</param>
    /// <param name="readerGone">Asked after each launch: whether no one reads the names any more (| head); then the run ends quietly, exit 141.</param>
    public static int Run(SampleVerb verb, TextWriter stdout, TextWriter stderr, CancellationToken cancel = default, Func<bool>? readerGone = null)
    {
        if (verb.Count < 0)
            throw new UserError($"--count must be 0 or more (got {verb.Count})");
        if (verb.Format is not ("text" or "jsonl"))
            throw new UserError($"--format must be text or jsonl (got '{verb.Format}')");
        if (verb.Batch < 1)
            throw new UserError($"--batch must be at least 1 (got {verb.Batch})");
        var options = new SampleOptions(verb.Temperature, verb.TopK, verb.TopP, verb.Prefix, verb.MinLength, verb.MaxLength);
        options.Validate();
        var model = Checkpoint.Load(verb.Model);
        // A model of lower-cased names prints them capitalised: --prefix Tyr means what it shows.
        var trained = TrainOptions.Stored(verb.Model, model.Metadata);
        bool lowerCased = trained?.LowerCased ?? true;
        if (lowerCased)
            options = options with { Prefix = options.Prefix.ToLowerInvariant() };
        try
        {
            model.Vocabulary.Encode(options.Prefix);
        }
        catch (UserError e)
        {
            throw new UserError($"--prefix: {e.Message}");
        }
        var known = TrainingNames(verb, model, trained ?? new TrainOptions());
        if (verb.Novel && known is null)
            throw new UserError($"--novel needs the training names: '{verb.Model}' does not hold them; give them with --data FILE");

        using var sampler = Devices.CreateSampler(verb.Device, model.Parameters, model.Vocabulary, VerbOptions.ThreadsOrAll(verb.Threads), verb.Batch, stderr.WriteLine);
        // Names are printed as each launch's are drawn, so that a large --count needs no memory
        // for them and an interrupted run keeps what it printed; repeats are counted among the
        // first RepeatWindow names.
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var lines = new StringWriter(); // a launch's names, written at once: a write per name cost more than drawing it
        long kept = 0, drawn = 0, novel = 0, repeats = 0;
        // On the host a launch of 4,096 names takes well under a second, so Ctrl-C is answered soon;
        // a device gets its --batch (up to a million names held at once).
        int launch = sampler is HostNameSampler ? 4096 : Math.Min(verb.Batch, 1 << 20);
        while (kept < verb.Count && !cancel.IsCancellationRequested)
        {
            if (drawn >= (long)MaxDrawsPerName * verb.Count)
                throw new UserError($"--novel: only {kept} of {verb.Count} names were new after {drawn} draws{(kept > 0 ? " (those are printed above)" : "")}; try a higher --temperature");
            // Without --novel every name drawn is kept, so the rates below describe the output.
            int chunk = (int)Math.Min(verb.Count - kept + (verb.Novel ? 16 : 0), launch);
            foreach (var s in sampler.Sample(options, verb.Seed, drawn, chunk))
            {
                if (kept == verb.Count)
                    break; // --novel draws a few spare names: the report counts only those looked at
                drawn++;
                bool isNovel = known is not null && !known.Contains(s.Name);
                novel += isNovel ? 1 : 0;
                if (verb.Novel && !isNovel)
                    continue;
                if (kept++ < RepeatWindow && !seen.Add(s.Name))
                    repeats++;
                lines.WriteLine(verb.Format == "jsonl"
                    ? JsonSerializer.Serialize(new { name = s.Name, log_probability = Math.Round(s.LogProbability, 6), novel = known is null ? (bool?)null : isNovel })
                    : Sampler.Display(s.Name, lowerCased));
            }
            stdout.Write(lines.GetStringBuilder());
            stdout.Flush();
            lines.GetStringBuilder().Clear();
            if (readerGone?.Invoke() == true)
                return UserError.ReaderGone; // as `yes | head` ends: no report on a terminal after head's lines
        }
        if (kept > 0)
        {
            string novelty = known is null ? "novelty unknown (no training names)" :
                verb.Novel ? string.Create(CultureInfo.InvariantCulture, $"all new: {drawn} drawn, {100.0 * novel / drawn:F1}% of them not in the training data")
                : string.Create(CultureInfo.InvariantCulture, $"{100.0 * novel / drawn:F1}% not in the training data");
            string among = kept > RepeatWindow ? string.Create(CultureInfo.InvariantCulture, $" of the first {RepeatWindow:N0}") : "";
            stderr.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{kept} names: {novelty}; {100.0 * repeats / Math.Min(kept, RepeatWindow):F1}%{among} repeat an earlier name"));
        }
        if (kept < verb.Count)
        {
            stderr.WriteLine($"interrupted after {kept} of {verb.Count} names");
            return UserError.Interrupted;
        }
        return 0;
    }

    /// <summary>The names the model learned from: --data, else those stored in the checkpoint.</summary>
    private static HashSet<string>? TrainingNames(SampleVerb verb, LoadedModel model, TrainOptions trained)
    {
        if (verb.Data is not null)
            return Dataset.Load(verb.Data, trained.KeepCase, trained.MaxNameLength, TrainedLimit(trained)).Names.ToHashSet(StringComparer.Ordinal);
        return model.Metadata.TryGetValue("names", out var names) ? names.Split('\n').ToHashSet(StringComparer.Ordinal) : null;
    }

    /// <summary>The name-length limit of --data for verbs that have no --max-name-length: the model's.</summary>
    public static string TrainedLimit(TrainOptions trained) =>
        $"{trained.MaxNameLength}, the longest name the model was trained to read (train --max-name-length)";
}
