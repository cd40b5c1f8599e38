using GpuDinoRnn.Training;

namespace GpuDinoRnn.Tests.Training;

/// Every expected value here was printed by real numpy (1.24, legacy np.random); the Python
/// one-liner above each vector regenerates it. Doubles are compared exactly (bit for bit):
/// the point of NumpyRandom is to reproduce the course's numbers, not approximate them.
public class NumpyRandomTests
{
    // python3 -c "import numpy as np; print([int(x) for x in np.random.RandomState(0)._bit_generator.random_raw(5)])"
    // python3 -c "import numpy as np; print([int(x) for x in np.random.RandomState(1)._bit_generator.random_raw(5)])"
    // python3 -c "import numpy as np; print([int(x) for x in np.random.RandomState(5489)._bit_generator.random_raw(5)])"
    // (5489 is also std::mt19937's default seed: numpy seeds an int with init_genrand.)
    [Theory]
    [InlineData(0u, new uint[] { 2357136044, 2546248239, 3071714933, 3626093760, 2588848963 })]
    [InlineData(1u, new uint[] { 1791095845, 4282876139, 3093770124, 4005303368, 491263 })]
    [InlineData(5489u, new uint[] { 3499211612, 581869302, 3890346734, 3586334585, 545404204 })]
    public void FirstRawOutputsMatchNumpy(uint seed, uint[] expected)
    {
        var rng = new NumpyRandom(seed);
        var actual = expected.Select(_ => rng.NextUInt32()).ToArray();
        Assert.Equal(expected, actual);
    }

    // Outputs 625..627, i.e. after the first regeneration of the 624-word state:
    // python3 -c "import numpy as np; r=np.random.RandomState(0); r._bit_generator.random_raw(624); print([int(x) for x in r._bit_generator.random_raw(3)])"
    [Fact]
    public void RawOutputsAcrossTheSecondBlockMatchNumpy()
    {
        var rng = new NumpyRandom(0);
        for (int i = 0; i < 624; i++)
        {
            rng.NextUInt32();
        }

        Assert.Equal(new uint[] { 341544762, 1076416385, 384842097 }, new[] { rng.NextUInt32(), rng.NextUInt32(), rng.NextUInt32() });
    }

    // python3 -c "import numpy as np; np.random.seed(0); print([repr(x) for x in np.random.random_sample(4)])"
    [Fact]
    public void RandomSampleMatchesNumpy()
    {
        var rng = new NumpyRandom(0);
        AssertBitsEqual(new[] { 0.5488135039273248, 0.7151893663724195, 0.6027633760716439, 0.5448831829968969 },
            [rng.RandomSample(), rng.RandomSample(), rng.RandomSample(), rng.RandomSample()]);
    }

    // python3 -c "import numpy as np; np.random.seed(1); a = np.random.randn(3); b = np.random.randn(4); print([repr(x) for x in a], [repr(x) for x in b])"
    // (np.random.seed(1); np.random.randn(7) prints the same seven values: the odd call leaves
    // the second normal of a pair cached, and the next call returns it first.)
    [Fact]
    public void RandnMatchesNumpyAcrossAnOddSizedCall()
    {
        var rng = new NumpyRandom(1);
        var a = new double[3];
        var b = new double[4];
        rng.Randn(a);
        rng.Randn(b);

        AssertBitsEqual(new[] { 1.6243453636632417, -0.6117564136500754, -0.5281717522634557 }, a);
        AssertBitsEqual(new[] { -1.0729686221561705, 0.8654076293246785, -2.3015386968802827, 1.74481176421648 }, b);
    }

    [Fact]
    public void StandardNormalOneAtATimeMatchesRandn()
    {
        var bulk = new double[7];
        new NumpyRandom(1).Randn(bulk);

        var rng = new NumpyRandom(1);
        var single = Enumerable.Range(0, 7).Select(_ => rng.StandardNormal()).ToArray();

        AssertBitsEqual(bulk, single);
    }

    [Fact]
    public void SeedClearsTheCachedNormal()
    {
        var rng = new NumpyRandom(1);
        rng.StandardNormal(); // Leaves -0.6117564136500754 cached.
        rng.Seed(1);
        AssertBitsEqual(new[] { 1.6243453636632417, -0.6117564136500754 }, [rng.StandardNormal(), rng.StandardNormal()]);
    }

    // The course's weight initialisation, e.g. Wax = np.random.randn(n_a, n_x) * 0.01 after seed(1).
    // The sum is Python's sequential sum (W.sum() in numpy is pairwise, ending ...594):
    // python3 -c "import numpy as np; np.random.seed(1); W = np.random.randn(50, 27) * 0.01; print(repr(W[0,0]), repr(W[0,26]), repr(W[1,0]), repr(W[17,3]), repr(W[49,26]), repr(sum(W.ravel().tolist())))"
    [Fact]
    public void Randn50By27TimesPointZeroOneMatchesNumpy()
    {
        const int Rows = 50, Cols = 27;
        var w = new double[Rows * Cols];
        new NumpyRandom(1).Randn(w);
        double sum = 0.0;
        for (int i = 0; i < w.Length; i++)
        {
            w[i] *= 0.01;
            sum += w[i];
        }

        AssertBitsEqual(
            new[] { 0.01624345363663242, -0.0012289022551864818, -0.009357694342590688, 0.010449944096738975, 0.01430932797842637, 0.5778604583968603 },
            [w[0], w[26], w[Cols], w[(17 * Cols) + 3], w[(49 * Cols) + 26], sum]);
    }

    // python3 -c "import numpy as np; np.random.seed(0); x = list(range(10)); np.random.shuffle(x); print(x)"
    [Fact]
    public void ShuffleOfTenMatchesNumpy()
    {
        var list = Enumerable.Range(0, 10).ToList();
        new NumpyRandom(0).Shuffle(list);
        Assert.Equal(new[] { 2, 8, 4, 9, 1, 6, 7, 3, 0, 5 }, list);
    }

    // Two shuffles in a row share the stream:
    // python3 -c "import numpy as np; np.random.seed(7); x = list(range(2)); np.random.shuffle(x); y = list(range(5)); np.random.shuffle(y); print(x, y)"
    [Fact]
    public void ConsecutiveShufflesMatchNumpy()
    {
        var rng = new NumpyRandom(7);
        var x = Enumerable.Range(0, 2).ToList();
        var y = Enumerable.Range(0, 5).ToList();
        rng.Shuffle(x);
        rng.Shuffle(y);
        Assert.Equal(new[] { 0, 1 }, x);
        Assert.Equal(new[] { 0, 3, 2, 1, 4 }, y);
    }

    // python3 -c "import numpy as np; np.random.seed(0); x = list(range(1536)); np.random.shuffle(x); print(x[:8], x[-4:], x[768], sum(i * v for i, v in enumerate(x)))"
    [Fact]
    public void ShuffleOf1536MatchesNumpy()
    {
        var x = Enumerable.Range(0, 1536).ToList();
        new NumpyRandom(0).Shuffle(x);

        Assert.Equal(new[] { 1408, 1018, 651, 303, 1127, 979, 1214, 1360 }, x.Take(8));
        Assert.Equal(new[] { 835, 1216, 559, 684 }, x.Skip(1532));
        Assert.Equal(1441, x[768]);
        Assert.Equal(904675407L, x.Select((v, i) => (long)i * v).Sum());
    }

    // A 27-way p with a zero first entry (like the course's vocabulary), drawn repeatedly:
    // python3 -c "import numpy as np; p = np.arange(27) / 351; np.random.seed(0); print([int(np.random.choice(27, p=p)) for _ in range(12)])"
    [Fact]
    public void ChoiceSequenceMatchesNumpy()
    {
        var p = Enumerable.Range(0, 27).Select(i => i / 351.0).ToArray();
        var rng = new NumpyRandom(0);
        var actual = Enumerable.Range(0, 12).Select(_ => rng.Choice(p)).ToArray();
        Assert.Equal(new[] { 20, 22, 21, 20, 17, 21, 18, 25, 26, 16, 24, 19 }, actual);
    }

    // Reseeding before every draw, as the course's sample() does:
    // python3 -c "import numpy as np; p = np.arange(27) / 351; print([int((np.random.seed(s), np.random.choice(list(range(27)), p=p))[1]) for s in range(12)])"
    // python3 -c "import numpy as np; p = [0.7, 0.1, 0.1, 0.05, 0.05]; print([int((np.random.seed(s), np.random.choice(range(5), p=p))[1]) for s in range(20)])"
    [Fact]
    public void ChoiceWithReseedingMatchesNumpy()
    {
        var p27 = Enumerable.Range(0, 27).Select(i => i / 351.0).ToArray();
        var p5 = new[] { 0.7, 0.1, 0.1, 0.05, 0.05 };
        var rng = new NumpyRandom(123);

        var actual27 = new int[12];
        for (uint s = 0; s < 12; s++)
        {
            rng.Seed(s);
            actual27[s] = rng.Choice(p27);
        }

        var actual5 = new int[20];
        for (uint s = 0; s < 20; s++)
        {
            rng.Seed(s);
            actual5[s] = rng.Choice(p5);
        }

        Assert.Equal(new[] { 20, 17, 18, 20, 26, 12, 25, 7, 25, 3, 23, 11 }, actual27);
        Assert.Equal(new[] { 0, 0, 0, 0, 4, 0, 2, 0, 2, 0, 1, 0, 0, 1, 0, 2, 0, 0, 0, 0 }, actual5);
    }

    [Fact]
    public void ChoiceConsumesExactlyOneRandomSample()
    {
        var a = new NumpyRandom(3);
        a.Choice([0.5, 0.5]);
        var b = new NumpyRandom(3);
        b.RandomSample();
        Assert.Equal(b.NextUInt32(), a.NextUInt32());
    }

    [Fact]
    public void ChoiceRejectsInvalidProbabilities()
    {
        var rng = new NumpyRandom(0);
        Assert.Throws<ArgumentException>(() => rng.Choice([]));
        Assert.Throws<ArgumentException>(() => rng.Choice([0.5, -0.1, 0.6]));
        Assert.Throws<ArgumentException>(() => rng.Choice([double.NaN, 1.0]));
        Assert.Throws<ArgumentException>(() => rng.Choice([0.0, 0.0]));
    }

    // The course reads the names with [x.lower().strip() for x in f.readlines()], then
    // np.random.seed(0); np.random.shuffle(examples). dinos_shuffled.txt holds the resulting
    // order, one name per line. dinos.txt has 1,536 '\n'-terminated lines except the last
    // (no trailing newline, no blank lines), so File.ReadAllLines gives the same 1,536 entries
    // as readlines(), with no empty string.
    [SkippableFact]
    public void ShuffleReproducesTheCourseDataOrder()
    {
        string dataDir = Path.Combine(FindRepositoryRoot(), "..", "shared", "data");
        string source = Path.Combine(dataDir, "dinos.txt");
        string shuffled = Path.Combine(dataDir, "dinos_shuffled.txt");
        Skip.IfNot(File.Exists(source) && File.Exists(shuffled), $"Course data not found under {dataDir}.");

        var examples = File.ReadAllLines(source).Select(x => x.ToLowerInvariant().Trim()).ToList();
        Assert.Equal(1536, examples.Count);

        new NumpyRandom(0).Shuffle(examples);

        var expected = File.ReadAllLines(shuffled);
        Assert.Equal(expected, examples);
    }

    private static string FindRepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "GpuDinoRnn.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"No GpuDinoRnn.sln above {AppContext.BaseDirectory}.");
    }

    private static void AssertBitsEqual(IReadOnlyList<double> expected, IReadOnlyList<double> actual)
    {
        Assert.Equal(
            expected.Select(BitConverter.DoubleToInt64Bits),
            actual.Select(BitConverter.DoubleToInt64Bits));
    }
}
