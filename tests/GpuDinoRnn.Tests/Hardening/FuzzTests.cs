// Seeded fuzzing of both loaders with thousands of mutated files: each either loads or fails
// with the documented UserError — no other exception, no hang, bounded memory.
using System.Buffers.Binary;
using GpuDinoRnn.Checkpoints;
using GpuDinoRnn.Data;
using GpuDinoRnn.Tests.Reference;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Hardening;

public class FuzzTests(ITestOutputHelper output)
{
    private static byte[] Mutate(byte[] original, Random rng)
    {
        var bytes = new List<byte>(original);
        int edits = rng.Next(1, 6);
        for (int e = 0; e < edits && bytes.Count > 0; e++)
        {
            int at = rng.Next(bytes.Count);
            switch (rng.Next(6))
            {
                case 0: bytes[at] = (byte)rng.Next(256); break;
                case 1: bytes[at] ^= (byte)(1 << rng.Next(8)); break;
                case 2: bytes.RemoveRange(at, Math.Min(rng.Next(1, 64), bytes.Count - at)); break;
                case 3: bytes.InsertRange(at, Enumerable.Range(0, rng.Next(1, 16)).Select(_ => (byte)rng.Next(256))); break;
                case 4: bytes.RemoveRange(at, bytes.Count - at); break; // truncate
                default:
                    if (bytes.Count >= 8) // rewrite the header length
                    {
                        var len = new byte[8];
                        BinaryPrimitives.WriteUInt64LittleEndian(len, rng.Next(3) switch { 0 => (ulong)rng.Next(2000), 1 => 1UL << rng.Next(20, 63), _ => ulong.MaxValue });
                        for (int i = 0; i < 8; i++)
                            bytes[i] = len[i];
                    }
                    break;
            }
        }
        return bytes.ToArray();
    }

    [Fact]
    public void MutatedCheckpointsLoadOrFailWithAUserError()
    {
        using var dir = new CliRunner.TempDir();
        string path = dir.File("seed.safetensors");
        Checkpoint.Save(path, TestData.RandomParameters(new Model.ModelShape(6, 27), 1), Vocabulary.Deserialize("\nabcdefghijklmnopqrstuvwxyz"),
            new Dictionary<string, string> { ["iteration"] = "3", ["options"] = "{\"hidden\":6}" });
        var original = File.ReadAllBytes(path);
        var rng = new Random(20261128);
        int loaded = 0, refused = 0;
        long memoryBefore = GC.GetTotalMemory(true);
        for (int i = 0; i < 3000; i++)
        {
            var bytes = Mutate(original, rng);
            try
            {
                Checkpoint.FromFile(SafeTensors.Parse(bytes, "fuzz"), "fuzz");
                loaded++;
            }
            catch (UserError e)
            {
                Assert.DoesNotContain('\n', e.Message);
                refused++;
            }
        }
        long growth = GC.GetTotalMemory(true) - memoryBefore;
        output.WriteLine($"3000 mutated checkpoints: {loaded} loaded, {refused} refused with a UserError; managed heap grew {growth / 1024} KiB");
        Assert.True(refused > 1000);
        Assert.True(growth < 16 << 20);
    }

    [Fact]
    public void MutatedDataFilesLoadOrFailWithAUserError()
    {
        var original = File.ReadAllBytes(TestData.BundledNames)[..4000];
        var rng = new Random(7);
        int loaded = 0, refused = 0;
        for (int i = 0; i < 3000; i++)
        {
            var bytes = Mutate(original, rng);
            try
            {
                var d = Dataset.Parse(bytes, "fuzz", keepCase: rng.Next(2) == 0, maxNameLength: 40);
                var v = Vocabulary.FromNames(d.Names);
                foreach (var name in d.Names)
                    Assert.Equal(name, v.Decode(v.Encode(name)));
                loaded++;
            }
            catch (UserError e)
            {
                Assert.DoesNotContain('\n', e.Message);
                refused++;
            }
        }
        output.WriteLine($"3000 mutated data files: {loaded} loaded, {refused} refused with a UserError");
        Assert.True(loaded > 100 && refused > 100);
    }
}
