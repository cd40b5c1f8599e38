// What a checkpoint holds besides the weights so that `train --resume` continues a run exactly:
// the iteration, the data order and its generator, the smoothed loss and the sample stream's
// position. Stored as one JSON string in the safetensors metadata ("state"), so a reader that
// only wants the weights (sample, eval, other tools) ignores it.
using System.Text.Json;
using GpuDinoRnn.Data;

namespace GpuDinoRnn.Training;

/// <param name="Updates">Optimizer updates applied (Adam's t); the moments are tensors beside the weights.</param>
/// <param name="Best">The lowest validation bits/char so far, where it was, and the evaluations since (--keep-best, --patience).</param>
/// <param name="EndedAt">Where the run ended (its last iteration, or an early stop); null while it goes on. A --keep-best
/// file's Iteration is its best evaluation's, before the end.</param>
/// <param name="StoppedEarly">It ended by --patience: resuming would only stop there again.</param>
public sealed record RunState(int Iteration, double SmoothedLoss, long SamplesDrawn, BatcherState Batcher, long Updates, BestSoFar Best,
    int? EndedAt = null, bool StoppedEarly = false)
{
    public const string Key = "state";

    public string ToJson() => JsonSerializer.Serialize(new Stored(
        Iteration, SmoothedLoss, SamplesDrawn, Batcher.Epoch, Batcher.Position, Batcher.Order,
        Batcher.Random.Select(v => v.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray(), Updates,
        double.IsFinite(Best.Bpc) ? Best.Bpc : null, Best.Iteration, Best.EvalsWithoutGain, EndedAt, StoppedEarly));

    public static RunState FromMetadata(IReadOnlyDictionary<string, string> metadata, string path)
    {
        if (!metadata.TryGetValue(Key, out var json))
            throw new UserError($"--resume '{path}' holds weights but no training state (written by an older version or another tool); use --init to start from its weights");
        try
        {
            var s = JsonSerializer.Deserialize<Stored>(json) ?? throw new JsonException("null");
            var random = s.Random.Select(v => ulong.Parse(v, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            if (s.Iteration < 0 || s.Order is null)
                throw new JsonException("out of range");
            // Files from before the best score was stored have none: the next evaluation is the best so far.
            var best = s.BestBpc is { } bpc ? new BestSoFar(bpc, s.BestIteration ?? -1, s.EvalsWithoutGain ?? 0) : BestSoFar.None;
            return new RunState(s.Iteration, s.SmoothedLoss, s.SamplesDrawn, new BatcherState(s.Epoch, s.Position, s.Order, random), s.Updates, best, s.EndedAt, s.StoppedEarly ?? false);
        }
        catch (Exception e) when (e is JsonException or FormatException or OverflowException or ArgumentNullException)
        {
            throw new UserError($"--resume '{path}': the stored training state is damaged ({e.Message})");
        }
    }

    private sealed record Stored(int Iteration, double SmoothedLoss, long SamplesDrawn, int Epoch, int Position, int[] Order, string[] Random, long Updates,
        double? BestBpc, int? BestIteration, int? EvalsWithoutGain, int? EndedAt, bool? StoppedEarly);

    /// <summary>The backend's moments and carried state as tensors beside the weights.</summary>
    public static IEnumerable<Checkpoints.Tensor> StateTensors(Model.ModelShape shape, Backends.BackendState state, bool moments, bool carry)
    {
        if (moments)
        {
            foreach (var name in Model.Parameters.NamesOf(shape))
            {
                var (offset, dims) = Model.Parameters.Layout(shape, name);
                int n = dims.Aggregate(1, (a, b) => a * b);
                yield return new Checkpoints.Tensor("optimizer.m." + name, dims, state.M.AsSpan(offset, n).ToArray());
                yield return new Checkpoints.Tensor("optimizer.v." + name, dims, state.V.AsSpan(offset, n).ToArray());
            }
        }
        if (carry)
            yield return new Checkpoints.Tensor("state.carry", [state.Carry.Length / shape.StateSize, shape.StateSize], state.Carry);
    }

    /// <summary>
    /// The backend state a checkpoint holds. What the run needs must be there, as StateTensors writes it
    /// with the same flags: every moment when <paramref name="moments"/>, the carried state when
    /// <paramref name="carry"/>; zeros stand in only for what the run does not use.
    /// </summary>
    public Backends.BackendState BackendState(Model.ModelShape shape, IReadOnlyList<Checkpoints.Tensor> tensors, string path, bool moments, bool carry)
    {
        // A missing moment resumed as zeros would not continue the run exactly, and a non-finite one
        // would only show up later as a diverged run: both are a damaged file.
        var required = new List<(string Name, string Why)>();
        if (moments)
            foreach (var name in Model.Parameters.NamesOf(shape))
                required.AddRange([("optimizer.m." + name, "the run's optimizer"), ("optimizer.v." + name, "the run's optimizer")]);
        if (carry)
            required.Add(("state.carry", "the run's carried state"));
        foreach (var (name, why) in required)
        {
            if (!tensors.Any(t => t.Name == name))
                throw new UserError($"--resume '{path}': tensor {name} is missing ({why} needs it to continue exactly)");
        }

        var m = new float[shape.ParameterCount];
        var v = new float[shape.ParameterCount];
        float[] carried = [];
        foreach (var t in tensors)
        {
            float[] target;
            int offset = 0;
            int[] dims;
            if (t.Name == "state.carry")
                (target, dims) = (carried = new float[t.Data.Length], [t.Data.Length / shape.StateSize, shape.StateSize]);
            else if (t.Name.StartsWith("optimizer.m.", StringComparison.Ordinal) || t.Name.StartsWith("optimizer.v.", StringComparison.Ordinal))
            {
                target = t.Name[10] == 'm' ? m : v;
                string name = t.Name[12..];
                if (!Model.Parameters.NamesOf(shape).Contains(name))
                    throw new UserError($"--resume '{path}': unexpected tensor {t.Name}");
                (offset, dims) = Model.Parameters.Layout(shape, name);
            }
            else
                throw new UserError($"--resume '{path}': unexpected tensor {t.Name}");
            if (!t.Shape.SequenceEqual(dims))
                throw new UserError($"--resume '{path}': tensor {t.Name} has the wrong shape");
            if (!t.Data.All(float.IsFinite))
                throw new UserError($"--resume '{path}': tensor {t.Name} holds NaN or infinite values");
            t.Data.CopyTo(target, offset);
        }
        return new Backends.BackendState(Updates, m, v, carried);
    }
}

/// <summary>The lowest validation bits/char so far (+∞ before the first evaluation), its iteration, and evaluations since.</summary>
public readonly record struct BestSoFar(double Bpc, int Iteration, int EvalsWithoutGain)
{
    public static readonly BestSoFar None = new(double.PositiveInfinity, -1, 0);
}
