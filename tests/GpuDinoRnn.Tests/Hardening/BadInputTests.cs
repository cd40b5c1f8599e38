// Every kind of bad input, through the real CLI entry point: one line on standard error, the
// documented exit code, no stack trace, nothing written to standard output, nothing overwritten.
using System.Buffers.Binary;
using System.Text;
using GpuDinoRnn.Checkpoints;
using GpuDinoRnn.Tests.Reference;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Hardening;

public class BadInputTests(ITestOutputHelper output)
{
    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    private void AssertOneLineError(string[] args, int exitCode, string fragment) => CliRunner.AssertOneLineError(output, args, exitCode, fragment);

    private static readonly string[] Quick = ["--device", "cpu", "--iterations", "2", "--sample-count", "0", "--hidden", "8"];

    public static TheoryData<string, byte[], string> BadDataFiles()
    {
        var long1001 = Encoding.UTF8.GetBytes("abc\n" + new string('x', 1001) + "\n");
        var manySymbols = Encoding.UTF8.GetBytes(string.Concat(Enumerable.Range(0, 1200).Select(i => char.ConvertFromUtf32(0x4E00 + i) + "\n")));
        return new()
        {
            { "empty", [], "no names" },
            { "blank lines", Encoding.UTF8.GetBytes("\n  \n\t\n"), "no names" },
            { "invalid UTF-8", [(byte)'a', (byte)'\n', 0xFF, 0xFE, (byte)'\n'], "line 2 is not valid UTF-8" },
            { "binary", [0x7F, (byte)'E', (byte)'L', (byte)'F', 0, 0, 1, 2], "line 1 holds a NUL byte" },
            { "long line", long1001, "line 2 is 1001 characters long, more than --max-name-length 1000" },
            { "huge vocabulary", manySymbols, "more than --max-vocab 1000" },
        };
    }

    [Theory]
    [MemberData(nameof(BadDataFiles))]
    public void BadDataFile(string what, byte[] content, string message)
    {
        using var dir = new CliRunner.TempDir();
        string path = dir.File(what.Replace(' ', '_') + ".txt");
        File.WriteAllBytes(path, content);
        AssertOneLineError(["train", "--data", path, .. Quick], 2, message);
    }

    [Fact]
    public void MaxVocabIsTheMostDistinctSymbolsAFileMayHold()
    {
        using var dir = new CliRunner.TempDir();
        string data = dir.File("three.txt");
        File.WriteAllText(data, "abc\ncab\n");
        var (code, _, err) = CliRunner.Run(output, ["train", "--data", data, "--max-vocab", "3", "--val-fraction", "0", .. Quick]);
        Assert.True(code == 0, err);
        AssertOneLineError(["train", "--data", data, "--max-vocab", "2", "--val-fraction", "0", .. Quick], 2,
            "holds 3 distinct symbols, more than --max-vocab 2");
    }

    [Fact]
    public void NoRunWritesOverItsNamesOrAModel()
    {
        using var dir = new CliRunner.TempDir();
        string data = dir.File("names.txt"), hardLink = dir.File("hard-link.txt"), model = dir.File("model.safetensors");
        File.Copy(TestData.BundledNames, data);
        Assert.Equal(0, CliRunner.Run(output, ["train", "--data", data, "--checkpoint", model, .. Quick]).Code);
        using (var ln = System.Diagnostics.Process.Start("ln", [data, hardLink]))
            ln.WaitForExit();
        Assert.True(File.Exists(hardLink));
        byte[] names = File.ReadAllBytes(data), weights = File.ReadAllBytes(model);

        foreach (string same in new[] { data, Path.Combine(dir.Path, ".", "names.txt"), hardLink })
            AssertOneLineError(["train", "--data", data, "--checkpoint", same, "--overwrite", .. Quick], 2,
                $"--checkpoint '{same}' is the --data file '{data}': the checkpoint would replace the names it trains on");
        string[] bench = ["bench", "--devices", "cpu", "--hidden", "8", "--steps", "2", "--repetitions", "1", "--warm-up", "0", "--data", data];
        AssertOneLineError([.. bench, "--json", hardLink], 2, $"bench: --json '{hardLink}' is the --data file");
        AssertOneLineError([.. bench, "--csv", model], 2, $"bench: --csv '{model}' is a model (safetensors); bench does not write over models");
        string results = dir.File("results.out");
        AssertOneLineError([.. bench, "--json", results, "--csv", results], 2, $"bench: --json and --csv name the same file '{results}'");
        AssertOneLineError([.. bench, "--json", dir.File("r.csv"), "--plot", dir.File("r.png")], 2,
            $"bench: --json and the plot's CSV name the same file '{dir.File("r.csv")}'");
        AssertOneLineError([.. bench, "--plot", dir.File("p.csv")], 2, $"bench: the plot's CSV and --plot name the same file '{dir.File("p.csv")}'");
        AssertOneLineError([.. bench[..^2], "--data", "", "--json", results], 2, "bench: --data needs a file name");
        // Nor the files beside a checkpoint: its lock, or what looks like a killed run's temporary file.
        string model2 = dir.File("m.st");
        File.Copy(data, model2 + ".lock");
        AssertOneLineError(["train", "--data", model2 + ".lock", "--checkpoint", model2, .. Quick], 2,
            $"--checkpoint '{model2}' takes '{model2}.lock' as its lock, and that is the --data file '{model2}.lock'");
        Assert.Equal(names, File.ReadAllBytes(model2 + ".lock"));
        File.Delete(model2 + ".lock"); // a run on m.st takes it as its lock, and removes it at the end
        foreach (string temporary in new[] { model2 + ".tmp-x", model2 + ".tmp-0123456789ab" })
        {
            File.Copy(data, temporary);
            Assert.Equal(0, CliRunner.Run(output, ["train", "--data", temporary, "--checkpoint", model2, "--overwrite", .. Quick]).Code);
            Assert.Equal(names, File.ReadAllBytes(temporary));
        }

        Assert.Equal(names, File.ReadAllBytes(data));
        Assert.Equal(weights, File.ReadAllBytes(model));
        Assert.False(File.Exists(results));
        // Results are replaced as before: a second run writes its numbers over the first's.
        Assert.Equal(0, CliRunner.Run(output, [.. bench, "--json", results]).Code);
        Assert.Equal(0, CliRunner.Run(output, [.. bench, "--json", results]).Code);
    }

    [Fact]
    public void AModelTooLargeForOneBufferIsRefusedBeforeItIsAllocated()
    {
        // 16 LSTM layers of 4096 on 4,000 symbols: 2.16·10⁹ weights, past what int indexes (the count used to wrap).
        using var dir = new CliRunner.TempDir();
        string data = dir.File("symbols.txt");
        File.WriteAllText(data, string.Concat(Enumerable.Range(0, 4000).Select(i => char.ConvertFromUtf32(0x4E00 + i) + "\n")));
        AssertOneLineError(["train", "--data", data, "--max-vocab", "5000", "--cell", "lstm", "--layers", "16", "--hidden", "4096", .. Quick[..^2]], 2,
            "a lstm model of 16 layer(s), H 4096 and 4001 symbols has 2,162,581,409 weights, more than 2,147,482,624");
        AssertOneLineError(["bench", "--devices", "cpu", "--hidden", "60000"], 2, "bench: --hidden must be between 1 and 4096 (got 60000)");
        // Within a group of threads of int.MaxValue, a kernel's last group would index past it.
        var edge = new GpuDinoRnn.Model.ModelShape(4078, 4173, GpuDinoRnn.Kernels.CellKind.Lstm, 16);
        Assert.Equal(2_147_483_051, edge.Stack(1, 1).ParameterCountWide);
        Assert.Contains("has 2,147,483,051 weights, more than 2,147,482,624", Assert.Throws<UserError>(edge.CheckSize).Message);
        (edge with { V = 4172 }).CheckSize();
        // The wide count the check uses is the layout's own wherever int holds it.
        foreach (var cell in Enum.GetValues<GpuDinoRnn.Kernels.CellKind>())
            foreach (var (h, v, layers) in new[] { (1, 2, 1), (50, 27, 1), (7, 300, 3), (192, 27, 16), (4096, 27, 2) })
            {
                var shape = new GpuDinoRnn.Model.ModelShape(h, v, cell, layers);
                Assert.Equal(shape.ParameterCount, shape.Stack(1, 1).ParameterCountWide);
            }
    }

    [Fact]
    public void MissingDirectoryAndUnreadableDataFiles()
    {
        AssertOneLineError(["train", "--data", "/nonexistent/names.txt", .. Quick], 2, "not found");
        AssertOneLineError(["train", "--data", Path.GetTempPath(), .. Quick], 2, "is a directory");
        // Reading /proc/self/mem from offset 0 fails with an I/O error even for root.
        AssertOneLineError(["train", "--data", "/proc/self/mem", .. Quick], 2, "cannot read");
    }

    [Fact]
    public void ASingleOneLetterNameTrainsAndSamples()
    {
        using var dir = new CliRunner.TempDir();
        string data = dir.File("one.txt");
        File.WriteAllText(data, "a\n");
        var (code, stdout, _) = CliRunner.Run(output, ["train", "--data", data, "--device", "cpu", "--iterations", "50", "--hidden", "4", "--lr", "0.5", "--sample-count", "3"]);
        Assert.Equal(0, code);
        Assert.Contains("Bits per character", stdout);
        var names = Lines(stdout).SkipWhile(l => !l.StartsWith("Trained", StringComparison.Ordinal)).Skip(1).ToList();
        Assert.Equal(3, names.Count);
        Assert.All(names, n => Assert.Matches("^A*$", n.ToUpperInvariant()));
    }

    /// <summary>A valid checkpoint's bytes, and the offset where its data starts.</summary>
    private static (byte[] Bytes, int DataStart) ValidCheckpoint()
    {
        using var dir = new CliRunner.TempDir();
        var p = TestData.RandomParameters(new Model.ModelShape(4, 27), 3, 0.1);
        string path = dir.File("ok.safetensors");
        Checkpoint.Save(path, p, GpuDinoRnn.Data.Vocabulary.Deserialize("\nabcdefghijklmnopqrstuvwxyz"));
        var bytes = File.ReadAllBytes(path);
        return (bytes, 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes));
    }

    private static byte[] WithHeader(string json, byte[] data)
    {
        var header = Encoding.UTF8.GetBytes(json);
        var bytes = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)header.Length);
        header.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + header.Length);
        return bytes;
    }

    private const string Meta = "\"__metadata__\":{\"vocab\":\"\\nabcdefghijklmnopqrstuvwxyz\",\"hidden\":\"4\",\"cell\":\"rnn\"}";

    private static string Tensors(string waxDtype = "F32", string waxShape = "[4,27]", string waaOffsets = "[432,496]", string extra = "") =>
        "{" + Meta +
        $",\"Wax\":{{\"dtype\":\"{waxDtype}\",\"shape\":{waxShape},\"data_offsets\":[0,432]}}" +
        $",\"Waa\":{{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":{waaOffsets}}}" +
        ",\"Wya\":{\"dtype\":\"F32\",\"shape\":[27,4],\"data_offsets\":[496,928]}" +
        ",\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[928,944]}" +
        ",\"by\":{\"dtype\":\"F32\",\"shape\":[27],\"data_offsets\":[944,1052]}" + extra + "}";

    public static TheoryData<string, byte[], string> BadCheckpoints()
    {
        var (ok, start) = ValidCheckpoint();
        var data = ok[start..];
        var headerLength = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(headerLength, 1UL << 20); // within the limit: the file is too short
        var hugeHeaderLength = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(hugeHeaderLength, 1UL << 40);
        var nan = (byte[])data.Clone();
        BinaryPrimitives.WriteSingleLittleEndian(nan.AsSpan(440), float.PositiveInfinity);
        return new()
        {
            { "empty", [], "is empty" },
            { "truncated in the length", ok[..5], "is only 5 bytes" },
            { "truncated in the header", ok[..(start - 10)], $"header length {start - 8} is larger than the file ({start - 10} bytes)" },
            { "truncated in the data", ok[..(ok.Length - 7)], $"\"data_offsets\" [944, {data.Length}] beyond the end of the data ({data.Length - 7} bytes)" },
            { "header length beyond the file", headerLength, "header length 1048576 is larger than the file (16 bytes)" },
            { "header length beyond the limit", hugeHeaderLength, "header length 1099511627776 is larger than the limit" },
            { "invalid JSON", WithHeader("{\"Wax\": [", data), "header is not valid JSON" },
            { "duplicate tensor", WithHeader(Tensors(extra: ",\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[928,944]}"), data), "header lists \"b\" twice" },
            { "missing tensor", WithHeader(Tensors().Replace(",\"by\":{\"dtype\":\"F32\",\"shape\":[27],\"data_offsets\":[944,1052]}", ""), data), "tensor by is missing" },
            { "wrong dtype", WithHeader(Tensors(waxDtype: "I32"), data), "tensor \"Wax\" has dtype \"I32\"; only F32 and F64 are supported" },
            { "wrong shape", WithHeader(Tensors(waxShape: "[27,4]"), data), "tensor Wax has shape [27,4]" },
            { "overlapping offsets", WithHeader(Tensors(waaOffsets: "[400,464]"), data), "tensors \"Wax\" and \"Waa\" overlap in the data" },
            { "out-of-range offsets", WithHeader(Tensors(waaOffsets: "[432,99999]"), data), "tensor \"Waa\" has \"data_offsets\" [432, 99999] beyond the end of the data (1052 bytes)" },
            { "metadata disagrees", WithHeader(Tensors().Replace("\"hidden\":\"4\"", "\"hidden\":\"5\""), data), "expected [5,27]" },
            { "hidden out of range", WithHeader(Tensors().Replace("\"hidden\":\"4\"", "\"hidden\":\"50000\""), data), "\"hidden\" is not an integer from 1 to 4096" },
            { "an unknown cell", WithHeader(Tensors().Replace("\"cell\":\"rnn\"", "\"cell\":\"mamba\""), data), "'mamba' model" },
            { "infinite weight", WithHeader(Tensors(), nan), "Waa holds NaN or infinite values" },
        };
    }

    [Theory]
    [MemberData(nameof(BadCheckpoints))]
    public void BadCheckpoint(string what, byte[] content, string message)
    {
        using var dir = new CliRunner.TempDir();
        string path = dir.File(what.Replace(' ', '_') + ".safetensors");
        File.WriteAllBytes(path, content);
        AssertOneLineError(["sample", "--model", path], 2, message);
        AssertOneLineError(["train", "--init", path, .. Quick], 2, path);
        Assert.Equal(content, File.ReadAllBytes(path)); // never touched
    }

    [Fact]
    public void ACheckpointWhoseVocabularyDiffersFromTheData()
    {
        using var dir = new CliRunner.TempDir();
        string model = dir.File("m.safetensors");
        File.WriteAllBytes(model, ValidCheckpoint().Bytes);
        string data = dir.File("names.txt");
        File.WriteAllText(data, "ÆLFRIC\nbob\n");
        AssertOneLineError(["train", "--init", model, "--data", data, "--device", "cpu", "--iterations", "2"], 2, "has vocabulary \"\\nabcdefghijklmnopqrstuvwxyz\" but the data");
    }

    [Theory]
    [InlineData("--hidden", "0", "--hidden must be between 1 and 4096")]
    [InlineData("--batch", "0", "--batch must be at least 1")]
    [InlineData("--lr", "-0.1", "--lr must be a positive number")]
    [InlineData("--lr", "NaN", "--lr must be a positive number")]
    [InlineData("--clip", "-1", "--clip must be 0 (off) or positive")]
    [InlineData("--threads", "0", "--threads must be at least 1")]
    [InlineData("--device", "tpu", "device 'tpu' is not present; devices here: cpu")]
    [InlineData("--device", "9", "device 9 is not present")]
    [InlineData("--epochs", "2", "--iterations and --epochs contradict each other")]
    [InlineData("--layers", "0", "--layers must be between 1 and 16")]
    [InlineData("--dropout", "1", "--dropout must be in [0, 1)")]
    [InlineData("--dropout", "-0.5", "--dropout must be in [0, 1)")]
    [InlineData("--checkpoint", "", "--checkpoint needs a file name")]
    [InlineData("--checkpoint", " ", "--checkpoint needs a file name")]
    public void BadTrainOption(string option, string value, string message)
    {
        var quick = new List<string>(Quick);
        int given = quick.IndexOf(option);
        if (given >= 0)
            quick.RemoveRange(given, 2);
        AssertOneLineError(["train", "--data", TestData.BundledNames, .. quick, option, value], 2, message);
    }

    [Fact]
    public void TheCoursePresetIsForOneVanillaLayer() =>
        AssertOneLineError(["train", "--preset", "course", "--cell", "lstm", .. Quick], 2, "the course's numpy initialisation (--preset course) is for one rnn layer");

    [Theory]
    [InlineData("--temperature", "0", "--temperature must be a number from 0.001 up")]
    [InlineData("--temperature", "-2", "--temperature must be a number from 0.001 up")]
    [InlineData("--temperature", "1e-320", "--temperature must be a number from 0.001 up")]
    [InlineData("--count", "-1", "--count must be 0 or more")]
    [InlineData("--max-length", "0", "--max-length must be between 1 and 100000")]
    [InlineData("--max-length", "100001", "--max-length must be between 1 and 100000")]
    [InlineData("--prefix", "a\nb", "--prefix cannot hold a line end")]
    [InlineData("--prefix", "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz", "--prefix is 52 symbols long, more than --max-length 50")]
    [InlineData("--threads", "0", "--threads must be at least 1")]
    public void BadSampleOption(string option, string value, string message)
    {
        using var dir = new CliRunner.TempDir();
        string model = dir.File("m.safetensors");
        File.WriteAllBytes(model, ValidCheckpoint().Bytes);
        AssertOneLineError(["sample", "--model", model, option, value], 2, message);
    }

    [Theory]
    [InlineData("train", "names.txt")]
    [InlineData("eval", "--model", "m.safetensors", "--data", "names.txt", "extra")]
    [InlineData("devices", "all")]
    public void ArgumentsWithoutAnOptionAreRefused(params string[] args) =>
        AssertOneLineError(args, 2, $"'{args[^1]}' is not an option: each value follows its option's name (gpudinornn help {args[0]} lists them)");

    [Fact]
    public void AHugeDataFileIsRefusedBeforeItFillsMemory()
    {
        // An endless one (a pipe) and /dev/zero: Data/LineEndTests.
        using var dir = new CliRunner.TempDir();
        string path = dir.File("big.txt");
        File.WriteAllBytes(path, new byte[(1 << 20) + 1]);
        Assert.Throws<UserError>(() => GpuDinoRnn.Data.Dataset.ReadFile(path, maxBytes: 1 << 20).Length);
        File.WriteAllBytes(path, Enumerable.Repeat((byte)'a', 1 << 20).ToArray());
        Assert.Equal(1 << 20, GpuDinoRnn.Data.Dataset.ReadFile(path, maxBytes: 1 << 20).Length);
        // /proc files say they are empty: they are read to their end all the same.
        Assert.EndsWith("\n", Encoding.UTF8.GetString(GpuDinoRnn.Data.Dataset.ReadFile("/proc/self/comm", maxBytes: 1 << 20)));
    }

    [Theory]
    [InlineData("train", "--help")]
    [InlineData("--version")]
    [InlineData("help", "sample")]
    public void AskedForHelpGoesToStandardOutput(params string[] args)
    {
        var (code, stdout, stderr) = CliRunner.Run(output, args);
        Assert.Equal(0, code);
        Assert.Equal("", stderr);
        Assert.NotEqual("", stdout.Trim()); // the heading names the entry assembly: the test host here
        if (args[0] != "--version")
            Assert.Contains("--seed", stdout);
    }

    [Theory]
    [InlineData("Verb 'fly' is not recognized (gpudinornn help lists the commands)", "fly")]
    [InlineData("--hidden 'many' is not a whole number (at most 2147483647) (gpudinornn train --help lists its options)", "train", "--hidden", "many")]
    [InlineData("Option 'no-such-option' is unknown (gpudinornn train --help lists its options)", "train", "--no-such-option")]
    public void UnknownVerbsAndUnparsableOptionsAreOneLineWithWhereToLook(string message, params string[] args) =>
        CliRunner.AssertOneLineError(output, args, 2, message);

    [Fact]
    public void AKernelThatFailsToCompileNamesTheDeviceAndSuggestsCpu()
    {
        bool cleaned = false;
        var e = Assert.Throws<UserError>(() => GpuDinoRnn.Backends.Devices.CompileOrExplain<GpuDinoRnn.Backends.IBackend>("cuda:0", "NVIDIA H200",
            () => throw new NotSupportedException("Intrinsic 'Tanh' is not supported\non this backend"), () => cleaned = true));
        Assert.Equal(UserError.DeviceError, e.ExitCode);
        Assert.Equal("the kernels failed to compile for cuda:0 (NVIDIA H200): Intrinsic 'Tanh' is not supported on this backend; try --device cpu", e.Message);
        Assert.True(cleaned);
    }

    [Fact]
    public void RunningOutOfDeviceMemoryNamesTheSizeAndTheDevice()
    {
        using var backend = (GpuDinoRnn.Backends.IlgpuBackend)GpuDinoRnn.Backends.Devices.Create("ilgpu-cpu", new Model.ModelShape(4, 5), 1);
        // 2³¹ − 1 elements of 64 KiB: a count the kernels can index, a size no machine has.
        var e = Assert.Throws<UserError>(() => { using var huge = backend.Allocate<Chunk>(int.MaxValue); });
        output.WriteLine(e.Message);
        Assert.Equal(UserError.DeviceError, e.ExitCode);
        Assert.Contains("out of device memory allocating", e.Message);
        Assert.Contains("GiB", e.Message);
        Assert.Contains("--device cpu", e.Message);
    }

    private unsafe struct Chunk
    {
        public fixed byte Bytes[65536];
    }

    /// <summary>
    /// The GPU backends' row buffers grow by doubling, but not past what the kernels can index:
    /// a batch that fits by itself is never refused for the doubled room.
    /// </summary>
    [Theory]
    [InlineData(100, 0, 384, 100)]                // the first batch: its own rows
    [InlineData(100, 80, 384, 160)]               // then twice the room
    [InlineData(1500, 1200, 1 << 20, 2047)]       // twice would pass 2³¹ − 1 elements: as many rows as can be indexed
    [InlineData(2047, 2000, 1 << 20, 2047)]       // exactly the last row that can be indexed
    [InlineData(3000, 2000, 1 << 20, 3000)]       // the batch alone is too long: its rows, which Allocate then refuses
    public void RowRoomDoublesButStaysWithinThe32BitIndices(int rows, int current, long elementsPerRow, int expected)
    {
        Assert.Equal(expected, GpuDinoRnn.Backends.DeviceMemory.GrownRows(rows, current, elementsPerRow));
    }

    [Fact]
    public void ABufferTooLongForThe32BitIndicesIsRefusedBeforeItIsAllocated()
    {
        using var backend = (GpuDinoRnn.Backends.IlgpuBackend)GpuDinoRnn.Backends.Devices.Create("ilgpu-cpu", new Model.ModelShape(4, 5), 1);
        var e = Assert.Throws<UserError>(() => { using var huge = backend.Allocate<float>((long)int.MaxValue + 1); });
        output.WriteLine(e.Message);
        Assert.Equal(UserError.DeviceError, e.ExitCode);
        Assert.Equal("ilgpu-cpu (CPUAccelerator): a buffer of 2,147,483,648 elements is too large: the kernels index with 32-bit " +
            "integers (at most 2,147,483,647); try a smaller --hidden or --batch", e.Message);
    }
}
