// What a checkpoint holds besides the weights so that `train --resume` continues a run exactly:
// the iteration, the data order and its generator, the smoothed loss and the sample stream's
// position. Stored as one JSON string in the safetensors metadata ("state"), so a reader that
// only wants the weights (sample, eval, other tools) ignores it.
using System.Text.Json;
using GpuDinoRnn.Data;

namespace GpuDinoRnn.Training;

public sealed record RunState(int Iteration, double SmoothedLoss, long SamplesDrawn, BatcherState Batcher)
{
    public const string Key = "state";

    public string ToJson() => JsonSerializer.Serialize(new Stored(
        Iteration, SmoothedLoss, SamplesDrawn, Batcher.Epoch, Batcher.Position, Batcher.Order,
        Batcher.Random.Select(v => v.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray()));

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
            return new RunState(s.Iteration, s.SmoothedLoss, s.SamplesDrawn, new BatcherState(s.Epoch, s.Position, s.Order, random));
        }
        catch (Exception e) when (e is JsonException or FormatException or OverflowException or ArgumentNullException)
        {
            throw new UserError($"--resume '{path}': the stored training state is damaged ({e.Message})");
        }
    }

    private sealed record Stored(int Iteration, double SmoothedLoss, long SamplesDrawn, int Epoch, int Position, int[] Order, string[] Random);
}
