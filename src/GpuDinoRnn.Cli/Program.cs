// gpudinornn: parses the verb and hands over to the library. User errors become one line on
// standard error and a non-zero exit code (2 bad input, 3 device, 4 write failure, 5 diverged,
// 130 interrupted, 141 sample's reader gone).
using System.Globalization;
using System.Reflection;
using System.Runtime.InteropServices;
using CommandLine;
using CommandLine.Text;
using GpuDinoRnn.Backends;
using GpuDinoRnn.Checkpoints;
using GpuDinoRnn.Training;

namespace GpuDinoRnn.Cli;

public static class Program
{
    /// <summary>The verbs, in the order help lists them.</summary>
    private static readonly Type[] Verbs = [typeof(TrainVerb), typeof(SampleVerb), typeof(EvalVerb), typeof(BenchVerb), typeof(DevicesVerb)];

    public static int Main(string[] args)
    {
        try
        {
            return Run(args, Console.Out, Console.Error, terminal: !Console.IsErrorRedirected);
        }
        catch (Exception e) when (StreamFailed(e))
        {
            // Files the program writes report their own failures: this is standard output or
            // error (a full disk, a closed descriptor), where a stack trace could not go either.
            try
            {
                Console.Error.WriteLine($"gpudinornn: error: cannot write the output: {(e.InnerException ?? e).Message}");
            }
            catch (Exception again) when (StreamFailed(again))
            {
                // Standard error is the one that failed: the exit code says it.
            }
            return UserError.WriteError;
        }
    }

    /// <summary>
    /// A standard stream's write failed: IOException (ENOSPC, EIO), or, for a closed descriptor
    /// (`>&-`), the UnauthorizedAccessException .NET makes of EBADF (errno 9), which no file the
    /// program opens itself can give; a file's EACCES is that file's own error.
    /// </summary>
    private static bool StreamFailed(Exception e) =>
        e is IOException || e is UnauthorizedAccessException { InnerException: IOException { HResult: BadDescriptor } };

    private const int BadDescriptor = 9; // EBADF on Linux and macOS

    /// <param name="terminal">Standard error is a terminal: train shows a progress bar there.</param>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, bool terminal = false)
    {
        using var parser = new Parser(s =>
        {
            s.HelpWriter = null; // written below: asked-for help to standard output (for | less), mistakes to standard error
            s.CaseInsensitiveEnumValues = true;
            s.CaseSensitive = false;
            s.ParsingCulture = ParseErrors.Culture;
        });
        var parsed = parser.ParseArguments(args, Verbs);
        if (parsed is NotParsed<object> notParsed)
        {
            // CommandLineParser takes `help fly` for plain `help` (no verb matched) and prints the verb list.
            if (args.Length > 1 && args[1].ToLowerInvariant() is not ("help" or "version" or "--help" or "-h" or "--version")
                && notParsed.Errors.Any(e => e is HelpVerbRequestedError { Matched: false }))
            {
                var names = Verbs.Select(v => v.GetCustomAttribute<VerbAttribute>()!.Name).ToList();
                stderr.WriteLine($"gpudinornn: error: no command '{args[1]}' to help with; the commands are {string.Join(", ", names[..^1])} and {names[^1]}");
                return UserError.BadInput;
            }
            bool asked = notParsed.Errors.All(e => e.Tag is ErrorType.HelpRequestedError or ErrorType.HelpVerbRequestedError or ErrorType.VersionRequestedError);
            if (!asked)
            {
                stderr.WriteLine($"gpudinornn: error: {ParseErrors.OneLine(notParsed, args)}");
                return UserError.BadInput;
            }
            stdout.Write(HelpText.AutoBuild(parsed));
            return 0;
        }
        try
        {
            ParseErrors.RefuseMissingValues(args, parsed.Value.GetType());
            ((VerbOptions)parsed.Value).RefuseUnnamed();
            return parsed.Value switch
            {
                TrainVerb t => Train(t, stdout, stderr, terminal),
                SampleVerb s => Sample(s, stdout, stderr),
                EvalVerb e => Evaluate(e, stdout, stderr),
                BenchVerb b => BenchCommand.Run(b, stdout, stderr),
                DevicesVerb d => ListDevices(d, stdout),
                _ => UserError.BadInput,
            };
        }
        catch (UserError e)
        {
            if (e.InnerException is { } cause)
                Trace(stderr, cause);
            stderr.WriteLine($"gpudinornn: error: {e.Message}");
            return e.ExitCode;
        }
        catch (Exception e) when (e is OutOfMemoryException
                                  || e is AggregateException a && a.Flatten().InnerExceptions.All(x => x is OutOfMemoryException))
        {
            // The cpu backends' buffers are managed arrays; a container's memory limit caps .NET's heap.
            stderr.WriteLine("gpudinornn: error: out of memory: the model, batch or data need more memory than the program may use " +
                             "(a container's limit caps it); try a smaller --hidden, --layers or --batch");
            return UserError.DeviceError;
        }
        catch (Exception e) when (Devices.Failed(e))
        {
            // sample and eval; train and bench say too which run or device it was.
            Trace(stderr, e);
            stderr.WriteLine($"gpudinornn: error: the device failed: {Devices.Reason(e)}; try --device cpu");
            return UserError.DeviceError;
        }
    }

    /// <summary>A device's whole exception, before its one line, when GPUDINORNN_TRACE=1.</summary>
    private static void Trace(TextWriter stderr, Exception e)
    {
        if (Environment.GetEnvironmentVariable("GPUDINORNN_TRACE") == "1")
            stderr.WriteLine(e);
    }

    /// <summary>
    /// The first Ctrl-C (or SIGTERM) lets the current step finish, writes the checkpoint and
    /// exits 130; a second Ctrl-C ends the process at once.
    /// </summary>
    private static int Train(TrainVerb verb, TextWriter stdout, TextWriter stderr, bool terminal)
    {
        var options = verb.ToOptions();
        using var stop = new Interrupt(stderr, options.Checkpoint is null ? "stopping after this step (no --checkpoint: nothing will be saved)"
            : options.KeepBest ? $"stopping after this step; '{options.Checkpoint}' keeps the best evaluation's model"
            : $"stopping after this step and writing '{options.Checkpoint}'");
        var result = terminal && options.LogFormat == LogFormat.Text
            ? TrainProgressBar.Run(options, stdout, stop.Token)
            : new Trainer(options, stdout, stderr).Run(cancel: stop.Token);
        if (!result.Interrupted)
            return 0;
        stderr.WriteLine(result.CheckpointIteration switch
        {
            null => $"interrupted at iteration {result.Iterations}; nothing saved",
            int saved when saved == result.Iterations => $"interrupted at iteration {result.Iterations}; the model is in '{options.Checkpoint}'",
            int saved => $"interrupted at iteration {result.Iterations}; '{options.Checkpoint}' holds the best model, of iteration {saved}, and --resume continues from there",
        });
        return UserError.Interrupted;
    }

    /// <summary>
    /// The first Ctrl-C (or SIGTERM) stops drawing after this launch's names and exits 130; a
    /// second ends the process at once. A reader of standard output that goes away stops it too (141).
    /// </summary>
    private static int Sample(SampleVerb verb, TextWriter stdout, TextWriter stderr)
    {
        using var stop = new Interrupt(stderr, "stopping after the names being drawn");
        // Only the process's own standard output can lose its reader (tests pass a StringWriter).
        Func<bool>? readerGone = ReferenceEquals(stdout, Console.Out) ? StandardOutput.ReaderGone : null;
        return SampleCommand.Run(verb, stdout, stderr, stop.Token, readerGone);
    }

    /// <summary>
    /// Ctrl-C and SIGTERM as a request to stop: the first says what will happen and cancels
    /// Token; a second Ctrl-C is left to its default action, which ends the process at once.
    /// </summary>
    private sealed class Interrupt : IDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly PosixSignalRegistration _sigint, _sigterm;
        private int _signals;

        public Interrupt(TextWriter stderr, string what)
        {
            void OnSignal(PosixSignalContext context)
            {
                if (Interlocked.Increment(ref _signals) > 1 && context.Signal == PosixSignal.SIGINT)
                    return; // not cancelled: the default action ends the process now
                context.Cancel = true;
                stderr.WriteLine($"{what}; Ctrl-C again quits at once");
                try
                {
                    _stop.Cancel();
                }
                catch (ObjectDisposedException)
                {
                    // the signal came as the command ended and disposed of this
                }
            }
            _sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
            _sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        }

        public CancellationToken Token => _stop.Token;

        public void Dispose()
        {
            _sigint.Dispose();
            _sigterm.Dispose();
            _stop.Dispose();
        }
    }

    private static int Evaluate(EvalVerb verb, TextWriter stdout, TextWriter stderr)
    {
        if (verb.Format is not ("text" or "jsonl"))
            throw new UserError($"--format must be text or jsonl (got '{verb.Format}')");
        var model = Checkpoint.Load(verb.Model);
        // Read the data as the model was trained on it: names (case kept or not) or one text in chunks.
        var trained = TrainOptions.Stored(verb.Model, model.Metadata) ?? new TrainOptions();
        IEnumerable<GpuDinoRnn.Data.Batch> batches;
        int count;
        string unit;
        if (trained.TextMode == GpuDinoRnn.Data.TextMode.Continuous)
        {
            string text = GpuDinoRnn.Data.Dataset.LoadText(verb.Data);
            int[] ids;
            try
            {
                ids = model.Vocabulary.EncodeText(text);
            }
            catch (UserError e)
            {
                throw new UserError($"'{verb.Data}': {e.Message}", e.ExitCode);
            }
            // A chunk predicts seq-length symbols, each from the one before: it needs one more.
            count = (ids.Length - 1) / trained.SeqLength;
            if (count == 0)
                throw new UserError($"'{verb.Data}' ({ids.Length} symbols) is shorter than one chunk of the model's --seq-length {trained.SeqLength} plus one");
            (batches, unit) = (GpuDinoRnn.Data.TextStreams.Chunks(ids, trained.SeqLength, 256), "chunks");
        }
        else
        {
            var names = GpuDinoRnn.Data.Dataset.Load(verb.Data, trained.KeepCase, trained.MaxNameLength, SampleCommand.TrainedLimit(trained)).Names.Select(n => model.Vocabulary.Encode(n)).ToList();
            (batches, count, unit) = (GpuDinoRnn.Data.Batcher.Cover(names, 256), names.Count, "names");
        }
        using var backend = Devices.Create(verb.Device, model.Parameters.Shape, VerbOptions.ThreadsOrAll(verb.Threads), stderr.WriteLine);
        backend.Upload(model.Parameters);
        var (nats, chars) = Trainer.TotalLoss(backend, batches);
        double bits = nats / chars / Math.Log(2);
        stdout.WriteLine(verb.Format == "jsonl"
            ? System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["data"] = verb.Data,
                [unit] = count,
                ["chars"] = chars,
                ["loss_per_" + unit.TrimEnd('s')] = nats / count,
                ["nats_per_char"] = nats / chars,
                ["bits_per_char"] = bits,
            })
            : string.Create(CultureInfo.InvariantCulture,
                $"{verb.Data}: {count} {(count == 1 ? unit.TrimEnd('s') : unit)}, {chars} characters; loss {nats / count:F4} nats per {unit.TrimEnd('s')}, {nats / chars:F4} nats and {bits:F4} bits per character"));
        return 0;
    }

    private static int ListDevices(DevicesVerb verb, TextWriter stdout)
    {
        var devices = Devices.List(VerbOptions.ThreadsOrAll(verb.Threads));
        stdout.WriteLine($"{"#",-3} {"device",-10} {"kind",-14} {"memory",10} {"units",6} {"warp",5}  {"usable",-6} name / note");
        for (int i = 0; i < devices.Count; i++)
        {
            var d = devices[i];
            // The ILGPU CPU emulator reports long.MaxValue: show only sizes a machine can have.
            string memory = d.MemoryBytes is > 0 and < 1L << 50
                ? string.Create(CultureInfo.InvariantCulture, $"{d.MemoryBytes / (1024.0 * 1024 * 1024):F1} GiB")
                : "-";
            stdout.WriteLine($"{i,-3} {d.Id,-10} {d.Kind,-14} {memory,10} {d.ComputeUnits,6} {d.WarpSize,5}  {(d.Usable ? "yes" : "no"),-6} {d.Name} ({d.Note})");
        }
        return 0;
    }
}
