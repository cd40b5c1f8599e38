// Reading names, the vocabulary, batching (time-major, padded, sorted) and the seeded split.
using System.Text;
using GpuDinoRnn.Data;
using GpuDinoRnn.Tests.Reference;

namespace GpuDinoRnn.Tests.Data;

public class DataTests
{
    private static Dataset Parse(string text, bool keepCase = false) => Dataset.Parse(Encoding.UTF8.GetBytes(text), "test.txt", keepCase);

    [Fact]
    public void LinesAreStrippedLowerCasedAndBlankLinesSkipped()
    {
        var d = Parse("  Aachenosaurus \r\n\nAardonyx\n\n  \nabelisaurus\naardonyx");
        Assert.Equal(["aachenosaurus", "aardonyx", "abelisaurus", "aardonyx"], d.Names);
        Assert.Equal(["Aachenosaurus", "Aardonyx", "abelisaurus", "aardonyx"], Parse("Aachenosaurus\nAardonyx\nabelisaurus\naardonyx", keepCase: true).Names);
    }

    [Fact]
    public void BundledDataHasTheDocumentedNamesAndVocabulary()
    {
        var d = Dataset.Load(TestData.BundledNames);
        Assert.Equal(1325, d.Names.Count);
        Assert.Equal(1318, d.Names.Distinct().Count());
        var v = Vocabulary.FromNames(d.Names);
        Assert.Equal(27, v.Size);
        Assert.Equal("\nabcdefghijklmnopqrstuvwxyz", v.Serialize());
    }

    [Fact]
    public void VocabularyPutsEndOfNameFirstThenSortedSymbols()
    {
        var v = Vocabulary.FromNames(["zeta", "ábc"]);
        Assert.Equal(["\n", "a", "b", "c", "e", "t", "z", "á"], v.Symbols);
        Assert.Equal([7, 2, 3], v.Encode("ábc"));
        Assert.Equal("ábc", v.Decode([7, 2, 3]));
        Assert.True(Vocabulary.Deserialize(v.Serialize()).SameAs(v));
        var e = Assert.Throws<UserError>(() => v.Encode("q"));
        Assert.Contains("'q'", e.Message);
    }

    [Fact]
    public void AVocabularyWhoseJoinedSymbolsSplitDifferentlyIsStoredAsAJsonArray()
    {
        // 🇦, 🇦🇦, 🇧🇨 joined read back as 🇦🇦, 🇦🇧, 🇨; 🇦🇦, 🇦🇧, 🇨 joined are the same string.
        var flags = Vocabulary.FromNames(["🇦🇦🇦", "🇧🇨"]);
        Assert.Equal(["\n", "🇦", "🇦🇦", "🇧🇨"], flags.Symbols);
        Assert.StartsWith("[", flags.Serialize(), StringComparison.Ordinal);
        Assert.Equal(flags.Symbols, Vocabulary.Deserialize(flags.Serialize()).Symbols);
        var other = Vocabulary.Deserialize("\n🇦🇦🇦🇧🇨");
        Assert.Equal(["\n", "🇦🇦", "🇦🇧", "🇨"], other.Symbols);
        Assert.NotEqual(other.Display(), flags.Display()); // messages that compare them tell them apart

        var mark = Vocabulary.FromNames(["\u0301abc", "zed"]);
        Assert.Equal("\u0301", mark.Symbols[^1]);
        Assert.Equal(mark.Symbols, Vocabulary.Deserialize(mark.Serialize()).Symbols);
    }

    [Fact]
    public void InvalidUtf8IsAnErrorNamingTheLine()
    {
        var bytes = Encoding.UTF8.GetBytes("abc\ndef\n").Concat(new byte[] { 0xC3, 0x28, (byte)'\n' }).ToArray();
        var e = Assert.Throws<UserError>(() => Dataset.Parse(bytes, "bad.txt"));
        Assert.Contains("line 3", e.Message);
        Assert.Contains("UTF-8", e.Message);
    }

    [Theory]
    [InlineData("")]
    [InlineData("\n\n  \n")]
    public void NoNamesIsAnError(string text)
    {
        var e = Assert.Throws<UserError>(() => Parse(text));
        Assert.Contains("no names", e.Message);
    }

    [Fact]
    public void MissingFileAndDirectoryAreErrors()
    {
        Assert.Contains("not found", Assert.Throws<UserError>(() => Dataset.Load("/nonexistent/names.txt")).Message);
        Assert.Contains("directory", Assert.Throws<UserError>(() => Dataset.Load(Path.GetTempPath())).Message);
    }

    [Fact]
    public void BatchIsTimeMajorPaddedAndSortedLongestFirst()
    {
        var batch = Batch.FromEncoded([[5], [1, 2, 3], [4, 4]]);
        Assert.Equal(3, batch.B);
        Assert.Equal(4, batch.T);
        Assert.Equal([4, 3, 2], batch.Lengths);
        Assert.Equal(9, batch.Chars);
        // Column b of row t: inputs START, c1…cn; targets c1…cn, '\n'; padding −1.
        Assert.Equal([-1, -1, -1, 1, 4, 5, 2, 4, -1, 3, -1, -1], batch.X.Select((x, i) => batch.Y[i] < 0 ? -1 : x).ToArray());
        Assert.Equal([1, 4, 5, 2, 4, 0, 3, 0, -1, 0, -1, -1], batch.Y);
        Assert.Equal([3, 3, 2, 1, 0], Enumerable.Range(0, 5).Select(batch.Active).ToArray());
    }

    [Fact]
    public void BatcherVisitsEveryNameOncePerEpochAndRepeatsWithTheSameSeed()
    {
        var names = Enumerable.Range(1, 10).Select(i => new[] { i }).ToArray();
        List<int> Visit(int seed, ShuffleMode mode)
        {
            var b = new Batcher(names, 4, mode, seed);
            var seen = new List<int>();
            for (int i = 0; i < 6; i++) // two epochs: 4 + 4 + 2 per epoch
            {
                var batch = b.Next();
                seen.AddRange(Enumerable.Range(0, batch.B).Select(n => batch.Y[n]));
            }
            return seen;
        }
        var first = Visit(1, ShuffleMode.Epoch);
        Assert.Equal(Enumerable.Range(1, 10), first.Take(10).Order());
        Assert.Equal(Enumerable.Range(1, 10), first.Skip(10).Order());
        Assert.NotEqual(first.Take(10), first.Skip(10)); // reshuffled each epoch
        Assert.Equal(first, Visit(1, ShuffleMode.Epoch));
        Assert.NotEqual(first, Visit(2, ShuffleMode.Epoch));
        var none = Visit(1, ShuffleMode.None);
        Assert.Equal(Enumerable.Range(1, 10), none.Take(10)); // file order (equal lengths keep their order)
        Assert.Equal(none.Take(10), none.Skip(10));
    }

    [Fact]
    public void SplitIsSeededDisjointAndSized()
    {
        var d = new Dataset(Enumerable.Range(0, 100).Select(i => $"n{i}").ToList(), "mem");
        var (train, val) = d.Split(0.1, 5);
        Assert.Equal(10, val.Count);
        Assert.Equal(90, train.Count);
        Assert.Empty(train.Intersect(val));
        Assert.Equal(val, d.Split(0.1, 5).Validation);
        Assert.NotEqual(val, d.Split(0.1, 6).Validation);
        Assert.Empty(d.Split(0, 5).Validation);
    }
}
