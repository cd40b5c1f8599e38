// The model file: what train writes, what another tool writes, and what is refused.
using GpuDinoRnn.Checkpoints;
using GpuDinoRnn.Data;
using GpuDinoRnn.Model;
using GpuDinoRnn.Tests.Hardening;
using GpuDinoRnn.Tests.Reference;
using GpuDinoRnn.Training;

namespace GpuDinoRnn.Tests.Checkpoints;

public class CheckpointTests
{
    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", name);

    [Fact]
    public void AFileWithOnlyTheFiveF64TensorsAndThreeMetadataKeysLoads()
    {
        // Written by numpy (Fixtures/make_numpy_safetensors.py): F64, hidden 4, vocab "\nabcd".
        var model = Checkpoint.Load(Fixture("numpy_written.safetensors"));
        Assert.Equal(new ModelShape(4, 5), model.Parameters.Shape);
        Assert.Equal("\nabcd", model.Vocabulary.Serialize());
        var names = Parameters.Names;
        for (int k = 0; k < names.Length; k++)
        {
            var values = model.Parameters.Slice(names[k]).ToArray();
            for (int i = 0; i < values.Length; i++)
                Assert.Equal((float)(0.01 * (i + 1) * (i % 2 == 0 ? 1 : -1) + k / 8.0), values[i]);
        }
    }

    [Fact]
    public void SaveThenLoadGivesTheSameModel()
    {
        string dir = Directory.CreateTempSubdirectory("gpudinornn-ck").FullName;
        try
        {
            var shape = new ModelShape(6, 4);
            var p = TestData.RandomParameters(shape, seed: 1);
            var vocab = Vocabulary.FromNames(["abc"]);
            string path = Path.Combine(dir, "m.safetensors");
            Checkpoint.Save(path, p, vocab, new Dictionary<string, string> { ["iteration"] = "7" });
            var loaded = Checkpoint.Load(path);
            Assert.Equal(p.Data, loaded.Parameters.Data);
            Assert.True(loaded.Vocabulary.SameAs(vocab));
            Assert.Equal("7", loaded.Metadata["iteration"]);
            Assert.Equal("rnn", loaded.Metadata["cell"]);
            Assert.Equal("\nabc", loaded.Metadata["vocab"]); // an ordinary vocabulary is stored joined, as always
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Theory]
    [InlineData("cell", "gru", "for a gru model of 1 layer(s)")]
    [InlineData("cell", "mamba", "'mamba' model")]
    [InlineData("layers", "2", "tensor l0.Wax is missing")]
    [InlineData("layers", "0", "\"layers\" is not an integer")]
    [InlineData("hidden", "5", "tensor Wax has shape [4,5], expected [5,5]")]
    [InlineData("hidden", "four", "\"hidden\" is not an integer from 1 to 4096")]
    [InlineData("hidden", "0", "\"hidden\" is not an integer from 1 to 4096")]
    [InlineData("hidden", "4097", "\"hidden\" is not an integer from 1 to 4096")]
    [InlineData("hidden", "50000", "\"hidden\" is not an integer from 1 to 4096")] // its parameter count wraps negative
    [InlineData("vocab", "[\"\\n\",\"a\",\"a\"]", "lists the symbol 'a' (U+0061) twice")]
    [InlineData("vocab", "[\"\\n\",1]", "not a JSON array of non-empty strings")]
    [InlineData("vocab", "abcd", "must start with '\\n'")]
    public void MetadataThatDisagreesIsRefused(string key, string value, string message)
    {
        string dir = Directory.CreateTempSubdirectory("gpudinornn-ck").FullName;
        try
        {
            var file = SafeTensors.Read(Fixture("numpy_written.safetensors"));
            var metadata = file.Metadata.ToDictionary(kv => kv.Key, kv => kv.Value);
            metadata[key] = value;
            string path = Path.Combine(dir, "bad.safetensors");
            SafeTensors.Write(path, file.Tensors, metadata);
            var e = Assert.Throws<UserError>(() => Checkpoint.Load(path));
            Assert.Contains(message, e.Message);
            Assert.Contains(path, e.Message);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void AModelTheMetadataClaimsIsNotAllocatedBeforeItsTensorsAreChecked()
    {
        // hidden 4096 over the fixture's hidden-4 tensors: a 68 MB model, refused for its first tensor's shape.
        var file = SafeTensors.Read(Fixture("numpy_written.safetensors"));
        var metadata = file.Metadata.ToDictionary(kv => kv.Key, kv => kv.Value);
        metadata["hidden"] = ModelShape.MaxHidden.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var claimed = new SafeTensorsFile(file.Tensors, metadata);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<UserError>(() => Checkpoint.FromFile(claimed, "claimed.safetensors"));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Contains("tensor Wax has shape [4,5], expected [4096,5]", e.Message);
        Assert.True(allocated < 1_000_000, $"allocated {allocated:N0} bytes before refusing the file");
    }

    [Theory]
    [InlineData("\u0301abc\nzed\n")] // U+0301 alone sorts after z, and "z" + U+0301 is one text element
    [InlineData("🇦🇦🇦\n🇧🇨\n")] // 🇦, 🇦🇦, 🇧🇨 joined split as 🇦🇦, 🇦🇧, 🇨: as many symbols, other ones
    public void AVocabularyWhoseJoinedSymbolsFormOtherTextElementsLoadsAsTrained(string names)
    {
        using var dir = new CliRunner.TempDir();
        string data = dir.File("names.txt");
        File.WriteAllText(data, names);
        string path = dir.File("m.safetensors");
        var options = new TrainOptions { Data = data, Device = "cpu", Threads = 1, Hidden = 4, Iterations = 3, SampleCount = 0, Checkpoint = path };
        new Trainer(options, TextWriter.Null, TextWriter.Null).Run();

        var trained = Vocabulary.FromNames(Dataset.Load(data).Names);
        var loaded = Checkpoint.Load(path);
        Assert.Equal(trained.Symbols, loaded.Vocabulary.Symbols);
        Assert.StartsWith("[", loaded.Metadata["vocab"], StringComparison.Ordinal);
        // The data's vocabulary equals the file's, so the model can go on training from it.
        new Trainer(options with { Init = path, Checkpoint = null }, TextWriter.Null, TextWriter.Null).Run();
    }

    [Fact]
    public void NonFiniteWeightsAndMissingTensorsAreRefused()
    {
        string dir = Directory.CreateTempSubdirectory("gpudinornn-ck").FullName;
        try
        {
            var file = SafeTensors.Read(Fixture("numpy_written.safetensors"));
            var meta = file.Metadata;
            string path = Path.Combine(dir, "bad.safetensors");
            var nan = file.Tensors.Select(t => t.Name == "Waa" ? t with { Data = t.Data.Select((v, i) => i == 3 ? float.NaN : v).ToArray() } : t);
            SafeTensors.Write(path, nan, meta);
            Assert.Contains("Waa holds NaN", Assert.Throws<UserError>(() => Checkpoint.Load(path)).Message);
            SafeTensors.Write(path, file.Tensors.Where(t => t.Name != "by"), meta);
            Assert.Contains("tensor by is missing", Assert.Throws<UserError>(() => Checkpoint.Load(path)).Message);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
