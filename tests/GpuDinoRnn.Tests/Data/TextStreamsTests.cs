// Continuous-text mode: how a long text becomes parallel streams of chunks, and training on it.
using GpuDinoRnn.Data;
using GpuDinoRnn.Tests.Hardening;
using GpuDinoRnn.Tests.Reference;
using GpuDinoRnn.Training;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Data;

public class TextStreamsTests(ITestOutputHelper output)
{
    [Fact]
    public void StreamsReadConsecutiveChunksAndPredictTheNextSymbol()
    {
        var ids = Enumerable.Range(0, 41).ToArray(); // symbol i at position i
        var streams = new TextStreams(ids, streams: 2, seqLength: 5);
        Assert.Equal(2, streams.Streams);
        Assert.Equal(4, streams.StepsPerEpoch); // each stream: 20 symbols read, 4 chunks of 5
        var first = streams.Next(out bool reset);
        Assert.True(reset);
        Assert.Equal([0, 20, 1, 21, 2, 22, 3, 23, 4, 24], first.X);       // time-major: stream 0 at 0…, stream 1 at 20…
        Assert.Equal([1, 21, 2, 22, 3, 23, 4, 24, 5, 25], first.Y);       // each target is the next symbol
        Assert.Equal(10, first.Chars);
        var second = streams.Next(out reset);
        Assert.False(reset);
        Assert.Equal(5, second.X[0]);                                    // stream 0 goes on where it stopped
        streams.Next(out _);
        streams.Next(out _);
        streams.Next(out reset);
        Assert.True(reset);                                              // a new pass starts from zero states
        Assert.Equal(1, streams.Epoch);
        Assert.Throws<UserError>(() => new TextStreams([1, 2, 3], streams: 1, seqLength: 5));
    }

    [Fact]
    public void ContinuousTrainingLearnsARepeatedTextAndResumesExactly()
    {
        using var dir = new CliRunner.TempDir();
        string data = dir.File("text.txt");
        File.WriteAllText(data, string.Concat(Enumerable.Repeat("the quick brown fox jumps over the lazy dog.\n", 120)));
        var options = new TrainOptions
        {
            Data = data,
            TextMode = TextMode.Continuous,
            Device = "cpu",
            Hidden = 32,
            Batch = 8,
            SeqLength = 16,
            Optimizer = "adam",
            Lr = 0.01f,
            Epochs = 4,
            SampleCount = 2,
            Checkpoint = dir.File("whole.safetensors"),
        };
        var whole = new Trainer(options, TextWriter.Null, TextWriter.Null).Run();
        output.WriteLine($"bits per character: training {whole.TrainBitsPerChar:F3}, validation {whole.ValBitsPerChar:F3}; first loss {whole.Losses[0]:F2}, last {whole.Losses[^1]:F2}");
        Assert.True(whole.ValBitsPerChar < 1.0, "a text that repeats one sentence is nearly predictable");
        Assert.True(whole.Losses[^1] < whole.Losses[0] / 4);

        string half = dir.File("half.safetensors");
        using var stop = new CancellationTokenSource();
        new Trainer(options with { Checkpoint = half }, TextWriter.Null, TextWriter.Null)
            .Run(cancel: stop.Token, progress: p => { if (p.Iteration == 50) stop.Cancel(); });
        var (code, _, _) = CliRunner.Run(output, "train", "--resume", half);
        Assert.Equal(0, code);
        Assert.Equal(whole.Parameters.Data, GpuDinoRnn.Checkpoints.Checkpoint.Load(half).Parameters.Data);

        // eval reads a continuous model's data as text in chunks, as training did.
        var (evalCode, evalOut, _) = CliRunner.Run(output, "eval", "--model", half, "--data", data, "--format", "jsonl");
        Assert.Equal(0, evalCode);
        var r = System.Text.Json.JsonDocument.Parse(evalOut).RootElement;
        Assert.True(r.GetProperty("chunks").GetInt32() > 0);
        Assert.True(r.GetProperty("bits_per_char").GetDouble() < 1.0);

        // 32 symbols are one chunk of 16 predictions (each needs the symbol after it), not two; fewer than 17 are none.
        string exact = dir.File("exact.txt"), tooShort = dir.File("short.txt");
        File.WriteAllText(exact, "the quick brown fox jumps over t");
        r = System.Text.Json.JsonDocument.Parse(CliRunner.Run(output, "eval", "--model", half, "--data", exact, "--format", "jsonl").Out).RootElement;
        Assert.Equal(1, r.GetProperty("chunks").GetInt32());
        Assert.Equal(16, r.GetProperty("chars").GetInt64());
        File.WriteAllText(tooShort, "the quick brown ");
        CliRunner.AssertOneLineError(output, ["eval", "--model", half, "--data", tooShort, "--format", "jsonl"], 2,
            "(16 symbols) is shorter than one chunk of the model's --seq-length 16 plus one");
        // A symbol the model does not know is named by its place: the message once held the whole text.
        string unknown = dir.File("unknown.txt");
        File.WriteAllText(unknown, "the quick\nbrown fox\nover!the lazy dog.\n" + string.Concat(Enumerable.Repeat("the lazy dog.\n", 200)));
        CliRunner.AssertOneLineError(output, ["eval", "--model", half, "--data", unknown], 2,
            $"'{unknown}': the symbol '!' (U+0021) at line 3, column 5 is not in the model's vocabulary");
        // A symbol of several code points (e and a combining acute) is shown with all of them.
        File.WriteAllText(unknown, "the quick brown fox jumps over the lazy dog.\nthe cafe\u0301\n");
        CliRunner.AssertOneLineError(output, ["eval", "--model", half, "--data", unknown], 2,
            $"'{unknown}': the symbol 'e\u0301' (U+0065 U+0301) at line 2, column 8 is not in the model's vocabulary");
        // A control character is shown by its code point alone: printed, it could break the line.
        File.WriteAllText(unknown, "the lazy dog.\u2028the end.\n");
        CliRunner.AssertOneLineError(output, ["eval", "--model", half, "--data", unknown], 2,
            $"'{unknown}': the symbol U+2028 at line 1, column 14 is not in the model's vocabulary");
    }

    [Fact]
    public void ATextIsReadAsItIsWithItsLastLineEnd()
    {
        using var dir = new CliRunner.TempDir();
        string data = dir.File("text.txt");
        File.WriteAllBytes(data, "\uFEFFab\r\ncd\n\n"u8.ToArray());
        Assert.Equal("ab\ncd\n\n", Dataset.LoadText(data)); // the BOM skipped, line ends made \n
        File.WriteAllText(data, "ab\ncd");
        Assert.Equal("ab\ncd", Dataset.LoadText(data));
    }

    [Fact]
    public void ATextShorterThanAChunkIsAnError()
    {
        using var dir = new CliRunner.TempDir();
        string data = dir.File("short.txt");
        File.WriteAllText(data, "tiny");
        CliRunner.AssertOneLineError(output, ["train", "--data", data, "--text-mode", "continuous", "--seq-length", "64", "--val-fraction", "0", "--device", "cpu"],
            2, "shorter than one --seq-length 64 chunk");
    }
}
