// `gpudinornn bench`: runs the benchmark on each selected device and shows the numbers as a
// table, and as JSON, CSV and a PNG plot when asked.
using System.Globalization;
using System.Text.Json;
using GpuDinoRnn.Checkpoints;
using GpuDinoRnn.Training;
using Spectre.Console;

namespace GpuDinoRnn.Cli;

public static class BenchCommand
{
    public static int Run(BenchVerb verb, TextWriter stdout, TextWriter stderr)
    {
        var job = new BenchJob(verb.Hidden, verb.Batch, verb.Steps, verb.WarmUp, verb.Repetitions, verb.Seed, verb.Threads.ToList(), verb.Data, verb.Cell, verb.Layers);
        job.Validate();
        // Before the timing, which may take minutes: these paths would only fail after it.
        string? csv = verb.Csv ?? (verb.Plot is null ? null : Path.ChangeExtension(verb.Plot, ".csv"));
        var outputs = new[] { ("--json", verb.Json), (verb.Csv is null ? "the plot's CSV" : "--csv", csv), ("--plot", verb.Plot) };
        string data = verb.Data ?? Trainer.BundledData;
        foreach (var (k, (option, path)) in outputs.Index())
        {
            if (path is null)
                continue;
            if (string.IsNullOrWhiteSpace(path))
                throw new UserError($"bench: {option} needs a file name");
            // What the user had stays: the names file, a model, and each other's numbers.
            if (CheckpointTarget.SameFile(path, data))
                throw new UserError($"bench: {option} '{path}' is the --data file");
            if (outputs.Take(k).FirstOrDefault(o => o.Item2 is { } earlier && CheckpointTarget.SameFile(earlier, path)) is ({ } first, _))
                throw new UserError($"bench: {first} and {option} name the same file '{path}'");
            if (SafeTensors.LooksLike(path))
                throw new UserError($"bench: {option} '{path}' is a model (safetensors); bench does not write over models");
            if (Directory.Exists(path))
                throw new UserError($"bench: {option} '{path}' is a directory");
            string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
            if (!Directory.Exists(folder))
                throw new UserError($"bench: {option} '{path}': the folder '{folder}' does not exist");
        }
        int listThreads = job.ThreadCounts.Max(); // only the ILGPU emulator's, to list it
        var devices = Benchmark.Select(verb.Devices, listThreads > 0 ? listThreads : Environment.ProcessorCount);
        var results = Benchmark.Run(devices, job, message => stderr.WriteLine($"bench: {message}"));
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(stdout) });
        if (!console.Profile.Out.IsTerminal)
            console.Profile.Width = 160; // a file or pipe gets the whole table, unwrapped
        console.Write(Table(results));

        if (verb.Json is not null)
            Write(verb.Json, JsonSerializer.Serialize(new { job = Job(job), results = results.Select(Row) }, new JsonSerializerOptions { WriteIndented = true }));
        if (csv is not null)
            Write(csv, Csv(results));
        if (verb.Plot is not null)
        {
            try
            {
                BenchPlot.Save(verb.Plot, results, job);
                stderr.WriteLine($"bench: plot written to '{verb.Plot}'");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new UserError($"bench: cannot write the plot '{verb.Plot}': {e.Message} (the numbers are in '{csv}')", UserError.WriteError);
            }
            catch (Exception e) when (e is TypeInitializationException or DllNotFoundException or InvalidOperationException)
            {
                // Drawing needs native graphics libraries a server may lack; the numbers are in the CSV.
                stderr.WriteLine($"bench: warning: the plot could not be drawn ({e.GetBaseException().Message}); the numbers are in '{csv}'");
            }
        }
        return 0;
    }

    private static Table Table(IReadOnlyList<BenchResult> results)
    {
        var cpu = results.FirstOrDefault(r => r.DeviceId == "cpu"); // with several thread counts, the first asked for
        var table = new Table().AddColumns("device", "cold start", "ms/step (median, min–max)", "chars/s", "× cpu", "launches/step", "final loss");
        foreach (var r in results)
        {
            table.AddRow(
                Markup.Escape(r.Device),
                F($"{r.ColdStartSeconds:F2} s"),
                F($"{r.MedianMsPerStep:F3} ({r.MinMsPerStep:F3}–{r.MaxMsPerStep:F3})"),
                F($"{r.CharsPerSecond:N0}"),
                cpu is null ? "-" : F($"{r.CharsPerSecond / cpu.CharsPerSecond:F2}"),
                r.LaunchesPerStep.ToString(CultureInfo.InvariantCulture),
                F($"{r.FinalLoss:F5}"));
        }
        return table;
    }

    private static object Job(BenchJob j) => new
    {
        hidden = j.Hidden,
        batch = j.Batch,
        steps = j.Steps,
        warm_up = j.WarmUp,
        repetitions = j.Repetitions,
        seed = j.Seed,
        threads = j.Threads,
        data = j.Data,
        cell = GpuDinoRnn.Model.CellNames.Of(j.Cell),
        layers = j.Layers,
    };

    private static object Row(BenchResult r) => new
    {
        device_id = r.DeviceId,
        threads = r.Threads,
        device = r.Device,
        cold_start_s = r.ColdStartSeconds,
        ms_per_step_median = r.MedianMsPerStep,
        ms_per_step_min = r.MinMsPerStep,
        ms_per_step_max = r.MaxMsPerStep,
        chars_per_s = r.CharsPerSecond,
        launches_per_step = r.LaunchesPerStep,
        final_loss = r.FinalLoss,
        seconds_per_repetition = r.SecondsPerRepetition,
        repetition_start_s = r.StartPerRepetition,
    };

    private static string Csv(IReadOnlyList<BenchResult> results)
    {
        var lines = new List<string> { "device_id,threads,device,cold_start_s,ms_per_step_median,ms_per_step_min,ms_per_step_max,chars_per_s,launches_per_step,final_loss" };
        foreach (var r in results)
            lines.Add(F($"{r.DeviceId},{r.Threads},\"{r.Device.Replace("\"", "\"\"", StringComparison.Ordinal)}\",{r.ColdStartSeconds:R},{r.MedianMsPerStep:R},{r.MinMsPerStep:R},{r.MaxMsPerStep:R},{r.CharsPerSecond:R},{r.LaunchesPerStep},{r.FinalLoss:R}"));
        return string.Join('\n', lines) + "\n";
    }

    private static void Write(string path, string text)
    {
        try
        {
            File.WriteAllText(path, text);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserError($"bench: cannot write '{path}': {e.Message}", UserError.WriteError);
        }
    }

    private static string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
