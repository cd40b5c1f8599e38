// Tests of the safetensors format layer: round trips, our byte layout, files from another writer
// (numpy fixtures), atomic writes, one test per kind of invalid file, and a seeded fuzz test.
using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using GpuDinoRnn.Checkpoints;

namespace GpuDinoRnn.Tests.Checkpoints;

public sealed class SafeTensorsTests : IDisposable
{
    const string Source = "test-source.st";
    readonly string _dir = Directory.CreateTempSubdirectory("safetensors-tests-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    static readonly Dictionary<string, string> NoMetadata = [];

    static Tensor[] SampleTensors() =>
    [
        new("Wax", [2, 3], [1f, -2.5f, float.NaN, float.PositiveInfinity, float.NegativeInfinity, -0f]),
        new("scalar", [], [float.Epsilon]),
        new("empty", [0, 3], []),
        new("b", [4], [float.MaxValue, float.MinValue, BitConverter.Int32BitsToSingle(0x7fc12345), 0f]),
        new("ünïcode \"name\"\n", [1, 1, 2], [3f, 4f]),
    ];

    static readonly Dictionary<string, string> SampleMetadata = new()
    {
        ["vocab"] = "\nabc\"\\ é<>'+",
        ["hidden"] = "4",
        ["empty"] = "",
    };

    static void AssertSame(IReadOnlyList<Tensor> expected, IReadOnlyList<Tensor> actual)
    {
        Assert.Equal(expected.Select(t => t.Name), actual.Select(t => t.Name));
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].Shape, actual[i].Shape);
            // Bitwise, so NaN payloads and negative zero count.
            Assert.Equal(expected[i].Data.Select(BitConverter.SingleToInt32Bits), actual[i].Data.Select(BitConverter.SingleToInt32Bits));
        }
    }

    // ---- round trips and our layout ----

    [Fact]
    public void WriteThenReadGivesBackExactlyTheSameTensorsAndMetadata()
    {
        string path = Path.Combine(_dir, "a.safetensors");
        SafeTensors.Write(path, SampleTensors(), SampleMetadata);
        var file = SafeTensors.Read(path);
        AssertSame(SampleTensors(), file.Tensors);
        Assert.Equal(SampleMetadata.OrderBy(kv => kv.Key), file.Metadata.OrderBy(kv => kv.Key));
        Assert.Equal([float.Epsilon], file.Find("scalar")!.Data);
        Assert.Null(file.Find("missing"));
    }

    [Fact]
    public void NoTensorsAndNoMetadataRoundTrip()
    {
        var file = SafeTensors.Parse(SafeTensors.Serialize([], NoMetadata), Source);
        Assert.Empty(file.Tensors);
        Assert.Empty(file.Metadata);
    }

    [Fact]
    public void WriteWritesTheBytesSerializeReturns()
    {
        string path = Path.Combine(_dir, "a.safetensors");
        SafeTensors.Write(path, SampleTensors(), SampleMetadata);
        Assert.Equal(SafeTensors.Serialize(SampleTensors(), SampleMetadata), File.ReadAllBytes(path));
    }

    [Fact]
    public void SerializedBytesFollowTheFormatWithAlignedContiguousData()
    {
        var tensors = SampleTensors();
        byte[] bytes = SafeTensors.Serialize(tensors, SampleMetadata);

        // An independent minimal reader.
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0UL, (8 + n) % 8);
        using var doc = JsonDocument.Parse(bytes.AsMemory(8, (int)n));
        var root = doc.RootElement;
        Assert.Equal("4", root.GetProperty("__metadata__").GetProperty("hidden").GetString());
        Assert.Equal(SampleMetadata["vocab"], root.GetProperty("__metadata__").GetProperty("vocab").GetString());
        Assert.Equal(tensors.Length + 1, root.EnumerateObject().Count());

        long expectedBegin = 0;
        foreach (var t in tensors)
        {
            var e = root.GetProperty(t.Name);
            Assert.Equal("F32", e.GetProperty("dtype").GetString());
            Assert.Equal(t.Shape, e.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()));
            long begin = e.GetProperty("data_offsets")[0].GetInt64(), end = e.GetProperty("data_offsets")[1].GetInt64();
            Assert.Equal(expectedBegin, begin);
            Assert.Equal(begin + 4L * t.Data.Length, end);
            for (int i = 0; i < t.Data.Length; i++)
            {
                int at = 8 + (int)n + (int)begin + 4 * i;
                Assert.Equal(BitConverter.SingleToInt32Bits(t.Data[i]), BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(at)));
            }
            expectedBegin = end;
        }
        Assert.Equal(8 + (long)n + expectedBegin, bytes.Length);
        // Padding is spaces, after the JSON.
        Assert.Equal((byte)' ', bytes[8 + (int)n - 1]);
    }

    [Fact]
    public void SerializeIsDeterministicWhateverTheMetadataOrder()
    {
        var reversed = SampleMetadata.Reverse().ToDictionary();
        Assert.Equal(SafeTensors.Serialize(SampleTensors(), SampleMetadata), SafeTensors.Serialize(SampleTensors(), reversed));
    }

    [Theory]
    [InlineData("__metadata__", new[] { 1 }, 1)]
    [InlineData("x", new[] { 2, 2 }, 3)]
    [InlineData("x", new[] { -1 }, 0)]
    public void SerializeRejectsInvalidTensorsAsProgrammingErrors(string name, int[] shape, int length)
    {
        Assert.Throws<ArgumentException>(() => SafeTensors.Serialize([new Tensor(name, shape, new float[length])], NoMetadata));
    }

    [Fact]
    public void SerializeRejectsDuplicateNames()
    {
        Assert.Throws<ArgumentException>(() => SafeTensors.Serialize([new Tensor("a", [1], [1f]), new Tensor("a", [1], [2f])], NoMetadata));
    }

    [Fact]
    public void TrailingBytesAfterTheDataAreAllowed()
    {
        byte[] bytes = [.. SafeTensors.Serialize(SampleTensors(), SampleMetadata), 1, 2, 3];
        AssertSame(SampleTensors(), SafeTensors.Parse(bytes, Source).Tensors);
    }

    // ---- files from another writer ----

    static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", name);

    static readonly (string Name, int[] Shape)[] FixtureTensors = [("Wax", [4, 5]), ("Waa", [4, 4]), ("Wya", [5, 4]), ("b", [4]), ("by", [5])];

    // Mirrors make_numpy_safetensors.py: v[i] = 0.01 * (i + 1) * (-1)**i + k / 8 for the k-th tensor.
    static float[] FixtureValues(int k, int count) =>
        [.. Enumerable.Range(0, count).Select(i => (float)(0.01 * (i + 1) * (i % 2 == 0 ? 1.0 : -1.0) + k / 8.0))];

    static void AssertFixture(SafeTensorsFile file, string[] fileOrder)
    {
        Assert.Equal(fileOrder, file.Tensors.Select(t => t.Name));
        for (int k = 0; k < FixtureTensors.Length; k++)
        {
            var (name, shape) = FixtureTensors[k];
            var t = file.Find(name);
            Assert.NotNull(t);
            Assert.Equal(shape, t.Shape);
            Assert.Equal(FixtureValues(k, shape.Aggregate(1, (a, b) => a * b)), t.Data); // exact
        }
        Assert.Equal(3, file.Metadata.Count);
        Assert.Equal("\nabcd", file.Metadata["vocab"]);
        Assert.Equal("4", file.Metadata["hidden"]);
        Assert.Equal("rnn", file.Metadata["cell"]);
    }

    [Fact]
    public void NumpyWrittenF64FileLoadsWithTheExpectedValues()
    {
        AssertFixture(SafeTensors.Read(Fixture("numpy_written.safetensors")), ["Wax", "Waa", "Wya", "b", "by"]);
    }

    [Fact]
    public void NumpyWrittenF32FileWithDataOutOfHeaderOrderLoads()
    {
        AssertFixture(SafeTensors.Read(Fixture("numpy_unordered_f32.safetensors")), ["by", "Wax", "b", "Waa", "Wya"]);
    }

    [SkippableFact]
    public void FixtureScriptReproducesTheCommittedFixtures()
    {
        const string python = "/usr/bin/python3";
        Skip.IfNot(File.Exists(python), "no /usr/bin/python3");
        File.Copy(Fixture("make_numpy_safetensors.py"), Path.Combine(_dir, "make.py"));
        var psi = new ProcessStartInfo(python, [Path.Combine(_dir, "make.py")]) { RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Skip.If(err.Contains("No module named 'numpy'"), "numpy is not installed");
        Assert.True(p.ExitCode == 0, err);
        foreach (string name in new[] { "numpy_written.safetensors", "numpy_unordered_f32.safetensors" })
        {
            Assert.Equal(File.ReadAllBytes(Fixture(name)), File.ReadAllBytes(Path.Combine(_dir, name)));
        }
    }

    // ---- atomic writes ----

    string[] TempFiles() => Directory.GetFiles(_dir, "*.tmp-*", SearchOption.AllDirectories);

    [Fact]
    public void WritingOverAnExistingFileReplacesItAndLeavesNoTempFile()
    {
        string path = Path.Combine(_dir, "a.safetensors");
        SafeTensors.Write(path, SampleTensors(), SampleMetadata);
        Tensor[] second = [new("only", [2], [7f, 8f])];
        SafeTensors.Write(path, second, NoMetadata);
        var file = SafeTensors.Read(path);
        AssertSame(second, file.Tensors);
        Assert.Empty(file.Metadata);
        Assert.Equal([path], Directory.GetFiles(_dir));
    }

    [Fact]
    public void WriteUnderARegularFileFailsWithWriteError()
    {
        string notADir = Path.Combine(_dir, "plain-file");
        File.WriteAllText(notADir, "keep me");
        string path = Path.Combine(notADir, "a.safetensors");
        var e = Assert.Throws<UserError>(() => SafeTensors.Write(path, SampleTensors(), SampleMetadata));
        Assert.Equal(UserError.WriteError, e.ExitCode);
        Assert.Contains(path, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Equal("keep me", File.ReadAllText(notADir));
        Assert.Empty(TempFiles());
    }

    [Theory]
    [InlineData("no-such-dir/a.safetensors")]
    [InlineData("")]
    public void WriteToAnImpossiblePathFailsWithWriteError(string relative)
    {
        string path = relative == "" ? "" : Path.Combine(_dir, relative);
        var e = Assert.Throws<UserError>(() => SafeTensors.Write(path, SampleTensors(), SampleMetadata));
        Assert.Equal(UserError.WriteError, e.ExitCode);
        Assert.Contains($"'{path}'", e.Message);
        Assert.Empty(TempFiles());
    }

    [Fact]
    public void WriteOverADirectoryFailsAfterTheTempFileAndRemovesIt()
    {
        // The temp file can be written but not renamed over a directory: the failure comes late.
        string path = Path.Combine(_dir, "is-a-dir");
        Directory.CreateDirectory(path);
        File.WriteAllText(Path.Combine(path, "inside"), "old");
        var e = Assert.Throws<UserError>(() => SafeTensors.Write(path, SampleTensors(), SampleMetadata));
        Assert.Equal(UserError.WriteError, e.ExitCode);
        Assert.Contains(path, e.Message);
        Assert.Empty(TempFiles());
        Assert.Equal("old", File.ReadAllText(Path.Combine(path, "inside")));
    }

    [Fact]
    public void WriteWithInvalidTensorsLeavesTheOldFileUntouched()
    {
        string path = Path.Combine(_dir, "a.safetensors");
        SafeTensors.Write(path, SampleTensors(), SampleMetadata);
        byte[] before = File.ReadAllBytes(path);
        Assert.Throws<ArgumentException>(() => SafeTensors.Write(path, [new Tensor("x", [3], [1f])], NoMetadata));
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Empty(TempFiles());
    }

    // ---- invalid files: each is a one-line UserError naming the source ----

    static UserError AssertBad(byte[] bytes, string fragment)
    {
        var e = Assert.Throws<UserError>(() => SafeTensors.Parse(bytes, Source));
        Assert.Equal(UserError.BadInput, e.ExitCode);
        Assert.StartsWith(Source, e.Message);
        Assert.Contains(fragment, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain('\r', e.Message);
        return e;
    }

    static byte[] Build(string header, int dataBytes = 0) => Build(Encoding.UTF8.GetBytes(header), dataBytes);

    static byte[] Build(byte[] header, int dataBytes)
    {
        var bytes = new byte[8 + header.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)header.Length);
        header.CopyTo(bytes, 8);
        return bytes;
    }

    UserError AssertBadFile(string path, string fragment)
    {
        var e = Assert.Throws<UserError>(() => SafeTensors.Read(path));
        Assert.Equal(UserError.BadInput, e.ExitCode);
        Assert.Contains(path, e.Message);
        Assert.Contains(fragment, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        return e;
    }

    [Fact]
    public void MissingFile() => AssertBadFile(Path.Combine(_dir, "nope.safetensors"), "does not exist");

    [Fact]
    public void ADirectoryIsNotAFile() => AssertBadFile(_dir, "is a directory");

    [Fact]
    public void EmptyFile()
    {
        string path = Path.Combine(_dir, "empty.safetensors");
        File.WriteAllBytes(path, []);
        AssertBadFile(path, "is empty");
    }

    [Fact]
    public void ShorterThanEightBytes() => AssertBad([1, 0, 0, 0, 0], "is only 5 bytes");

    [Fact]
    public void HeaderLongerThanTheFile() => AssertBad(Build("{}")[..9], "larger than the file");

    [Fact]
    public void HeaderClaimingGigabytesIsRefusedWithoutAllocating()
    {
        string path = Path.Combine(_dir, "huge.safetensors");
        var bytes = Build("{}");
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, 4_000_000_000UL);
        File.WriteAllBytes(path, bytes);
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        AssertBadFile(path, "larger than the limit");
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - allocated < 1_000_000);

        BinaryPrimitives.WriteUInt64LittleEndian(bytes, ulong.MaxValue);
        AssertBad(bytes, "larger than the limit");
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)SafeTensors.MaxHeaderBytes + 1);
        AssertBad(bytes, "larger than the limit");
    }

    [Fact]
    public void HeaderNotUtf8() => AssertBad(Build([(byte)'{', 0xff, 0xfe, (byte)'}'], 0), "not valid UTF-8");

    [Theory]
    [InlineData("")]
    [InlineData("{")]
    [InlineData("{\"a\": }")]
    [InlineData("{}{}")]
    [InlineData("{} x")]
    public void HeaderNotJson(string header) => AssertBad(Build(header), "not valid JSON");

    [Theory]
    [InlineData("[]", "array")]
    [InlineData("\"x\"", "string")]
    [InlineData("3", "number")]
    [InlineData("null", "null")]
    public void HeaderNotAnObject(string header, string kind) => AssertBad(Build(header), $"header is a JSON {kind}, not an object");

    [Theory]
    [InlineData("{\"t\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", "\"t\" has no \"dtype\"")]
    [InlineData("{\"t\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", "\"t\" has no \"shape\"")]
    [InlineData("{\"t\": {\"dtype\": \"F32\", \"shape\": [1]}}", "\"t\" has no \"data_offsets\"")]
    public void EntryMissingAField(string header, string fragment) => AssertBad(Build(header, 4), fragment);

    [Theory]
    [InlineData("{\"t\": 5}", "tensor \"t\" is a JSON number, not an object")]
    [InlineData("{\"t\": {\"dtype\": 32, \"shape\": [1], \"data_offsets\": [0, 4]}}", "\"dtype\" that is a JSON number")]
    [InlineData("{\"t\": {\"dtype\": \"F32\", \"shape\": \"1\", \"data_offsets\": [0, 4]}}", "\"shape\" that is a JSON string")]
    [InlineData("{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": {\"a\": 0}}}", "expected [begin, end]")]
    [InlineData("{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}", "expected [begin, end]")]
    [InlineData("{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, \"4\"]}}", "offsets must be non-negative integers")]
    [InlineData("{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 4]}}", "offsets must be non-negative integers")]
    [InlineData("{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4.5]}}", "offsets must be non-negative integers")]
    [InlineData("{\"t\": {\"dtype\": \"F32\", \"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", "lists \"dtype\" twice")]
    public void EntryWithWrongJsonTypes(string header, string fragment) => AssertBad(Build(header, 8), fragment);

    [Theory]
    [InlineData("F16")]
    [InlineData("BF16")]
    [InlineData("I64")]
    [InlineData("f32")]
    public void UnsupportedDtype(string dtype)
    {
        var e = AssertBad(Build($"{{\"weights\": {{\"dtype\": \"{dtype}\", \"shape\": [1], \"data_offsets\": [0, 4]}}}}", 4), $"dtype \"{dtype}\"");
        Assert.Contains("\"weights\"", e.Message);
        Assert.Contains("only F32 and F64", e.Message);
    }

    [Theory]
    [InlineData("[-1]")]
    [InlineData("[2.5]")]
    [InlineData("[1e2]")]
    [InlineData("[\"2\"]")]
    [InlineData("[null]")]
    [InlineData("[99999999999999999999999]")]
    public void BadShapeDimension(string shape) =>
        AssertBad(Build($"{{\"t\": {{\"dtype\": \"F32\", \"shape\": {shape}, \"data_offsets\": [0, 4]}}}}", 4), "dimensions must be non-negative integers");

    [Theory]
    [InlineData("[2147483647, 2147483647, 4]")]
    [InlineData("[4294967296]")]
    [InlineData("[65536, 65536, 65536, 65536, 65536]")]
    public void ShapeProductOverflow(string shape) =>
        AssertBad(Build($"{{\"t\": {{\"dtype\": \"F64\", \"shape\": {shape}, \"data_offsets\": [0, 4]}}}}", 4), "too many elements");

    [Fact]
    public void EndBeforeBegin() =>
        AssertBad(Build("{\"t\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 4]}}", 8), "end before begin");

    [Theory]
    [InlineData("[0, 12]")]
    [InlineData("[9223372036854775800, 9223372036854775807]")]
    public void OffsetsBeyondTheData(string offsets) =>
        AssertBad(Build($"{{\"t\": {{\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": {offsets}}}}}", 8), "beyond the end of the data (8 bytes)");

    [Theory]
    [InlineData("F32", "[3]", "[0, 8]", "needs 12")]
    [InlineData("F64", "[2]", "[0, 8]", "needs 16")]
    [InlineData("F32", "[]", "[0, 0]", "needs 4")]
    public void ByteLengthDoesNotMatchShape(string dtype, string shape, string offsets, string fragment) =>
        AssertBad(Build($"{{\"t\": {{\"dtype\": \"{dtype}\", \"shape\": {shape}, \"data_offsets\": {offsets}}}}}", 16), fragment);

    [Fact]
    public void OverlappingTensors()
    {
        var e = AssertBad(Build("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, " +
                                "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12), "overlap");
        Assert.Contains("\"a\"", e.Message);
        Assert.Contains("\"b\"", e.Message);
        // The same data for two names is overlap too.
        AssertBad(Build("{\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, " +
                        "\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8), "overlap");
    }

    [Fact]
    public void EmptyTensorsAndGapsAreNotOverlaps()
    {
        var file = SafeTensors.Parse(Build("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, " +
                                           "\"z\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]}, " +
                                           "\"c\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [12, 16]}}", 16), Source);
        Assert.Equal(["a", "z", "c"], file.Tensors.Select(t => t.Name));
    }

    [Fact]
    public void DuplicateTensorNames()
    {
        var e = AssertBad(Build("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, " +
                                "\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8), "lists \"w\" twice");
        // Escapes decode to the same name, so they are duplicates too.
        AssertBad(Build("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, " +
                        "\"\\u0077\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8), "twice");
        AssertBad(Build("{\"__metadata__\": {}, \"__metadata__\": {}}"), "twice");
    }

    [Theory]
    [InlineData("{\"__metadata__\": [\"a\"]}", "not an object of strings")]
    [InlineData("{\"__metadata__\": \"a\"}", "not an object of strings")]
    [InlineData("{\"__metadata__\": {\"hidden\": 4}}", "metadata \"hidden\" is a JSON number, not a string")]
    [InlineData("{\"__metadata__\": {\"x\": null}}", "not a string")]
    [InlineData("{\"__metadata__\": {\"x\": \"1\", \"x\": \"2\"}}", "metadata \"x\" is listed twice")]
    public void BadMetadata(string header, string fragment) => AssertBad(Build(header), fragment);

    [Theory]
    [InlineData("{\"\\ud800\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [0, 0]}}")]
    [InlineData("{\"__metadata__\": {\"\\udc00x\": \"a\"}}")]
    [InlineData("{\"__metadata__\": {\"x\": \"\\ud800\"}}")]
    [InlineData("{\"t\": {\"dtype\": \"F\\ud83d32\", \"shape\": [0], \"data_offsets\": [0, 0]}}")]
    public void LoneSurrogateEscapes(string header) => AssertBad(Build(header), "not valid text");

    [Fact]
    public void NullMetadataIsTreatedAsAbsent() => Assert.Empty(SafeTensors.Parse(Build("{\"__metadata__\": null}"), Source).Metadata);

    [Fact]
    public void NamesInMessagesCannotBreakTheLine()
    {
        var e = AssertBad(Build("{\"a\\nb\\u0001\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [0, 2]}}", 2), "a\\nb\\u0001");
        Assert.DoesNotContain('\u0001', e.Message);
    }

    // ---- fuzz ----

    [Fact]
    public void MutatedFilesEitherParseOrFailWithUserError()
    {
        byte[] valid = SafeTensors.Serialize(SampleTensors(), SampleMetadata);
        var rng = new Random(1234);
        int parsed = 0, refused = 0;
        for (int round = 0; round < 2000; round++)
        {
            byte[] bytes = Mutate(valid, rng);
            try
            {
                var file = SafeTensors.Parse(bytes, Source);
                parsed++;
                Assert.All(file.Tensors, t => Assert.Equal(t.Shape.Aggregate(1L, (a, d) => a * d), t.Data.Length));
            }
            catch (UserError e)
            {
                refused++;
                Assert.Equal(UserError.BadInput, e.ExitCode);
                Assert.StartsWith(Source, e.Message);
                Assert.DoesNotContain('\n', e.Message);
            }
            // Anything else escapes and fails the test, with the seed making it reproducible.
        }
        // Both outcomes must actually happen, or the mutations are not testing much.
        Assert.True(parsed > 50, $"parsed {parsed}");
        Assert.True(refused > 500, $"refused {refused}");
    }

    static byte[] Mutate(byte[] valid, Random rng)
    {
        var bytes = new List<byte>(valid);
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(valid);
        int edits = 1 + rng.Next(3);
        for (int e = 0; e < edits; e++)
        {
            switch (rng.Next(6))
            {
                case 0 when bytes.Count > 0: // flip a random bit, mostly in the header where the structure is
                    {
                        int at = rng.Next(2) == 0 ? rng.Next(Math.Min(headerEnd, bytes.Count)) : rng.Next(bytes.Count);
                        bytes[at] ^= (byte)(1 << rng.Next(8));
                        break;
                    }
                case 1: // replace a header byte with a JSON-significant character
                    {
                        int at = 8 + rng.Next(Math.Max(1, Math.Min(headerEnd, bytes.Count) - 8));
                        if (at < bytes.Count)
                        {
                            bytes[at] = (byte)"{}[]\",:-0123456789.e \\"[rng.Next(22)];
                        }
                        break;
                    }
                case 2: // truncate
                    {
                        int keep = rng.Next(bytes.Count + 1);
                        bytes.RemoveRange(keep, bytes.Count - keep);
                        break;
                    }
                case 3: // rewrite the header length, near the truth or wild
                    {
                        if (bytes.Count >= 8)
                        {
                            ulong n = rng.Next(3) switch
                            {
                                0 => (ulong)(headerEnd - 8 + rng.Next(-16, 17)),
                                1 => (ulong)rng.NextInt64(),
                                _ => (ulong)rng.Next(bytes.Count),
                            };
                            byte[] le = new byte[8];
                            BinaryPrimitives.WriteUInt64LittleEndian(le, n);
                            for (int i = 0; i < 8; i++)
                            {
                                bytes[i] = le[i];
                            }
                        }
                        break;
                    }
                case 4: // insert random bytes
                    {
                        var junk = new byte[1 + rng.Next(8)];
                        rng.NextBytes(junk);
                        bytes.InsertRange(rng.Next(bytes.Count + 1), junk);
                        break;
                    }
                default: // change a digit in the header (shapes and offsets)
                    {
                        var digits = Enumerable.Range(8, Math.Max(0, Math.Min(headerEnd, bytes.Count) - 8)).Where(i => bytes[i] is >= (byte)'0' and <= (byte)'9').ToList();
                        if (digits.Count > 0)
                        {
                            bytes[digits[rng.Next(digits.Count)]] = (byte)('0' + rng.Next(10));
                        }
                        break;
                    }
            }
        }
        return [.. bytes];
    }
}
