// --preset course reproduces the notebook: its first iteration against the reference, and
// (where ../shared holds the course's data) its printed output against the published one.
using System.Globalization;
using System.Text.RegularExpressions;
using GpuDinoRnn.Backends;
using GpuDinoRnn.Data;
using GpuDinoRnn.Model;
using GpuDinoRnn.Tests.Reference;
using GpuDinoRnn.Training;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Training;

public partial class CoursePresetTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("cpu")]
    [InlineData("ilgpu-cpu")]
    public void OneIterationFromTheCourseWeightsMatchesTheReference(string device)
    {
        var options = TrainOptions.Course with { Data = TestData.BundledNames, Iterations = 1, Device = device, Threads = 2 };
        var result = new Trainer(options, TextWriter.Null, TextWriter.Null).Run();

        var names = Dataset.Load(TestData.BundledNames).Names.ToList();
        var vocab = Vocabulary.FromNames(names);
        var order = Enumerable.Range(0, names.Count).ToArray();
        new NumpyRandom(0).Shuffle(order);
        var shape = new ModelShape(50, vocab.Size);
        var init = Parameters.Initialize(shape, InitScheme.Numpy, seed: 0);
        var batch = Batch.FromEncoded([vocab.Encode(names[order[0]])]);
        var r = ReferenceRnn.Run(TestData.ToDouble(init.Data), 50, vocab.Size, batch);
        var expected = ReferenceRnn.SgdStep(TestData.ToDouble(init.Data), r.Grad, 0.01, 5, ClipMode.Value);

        output.WriteLine($"{device}: first name '{names[order[0]]}', loss {result.Losses[0]} vs reference {r.Loss}");
        Assert.Equal(r.Loss, result.Losses[0], 1e-5 * r.Loss);
        // The step itself (after − before), not the weights: the course's steps are 1e-4 to 1e-8,
        // so the weights would match to 1e-5 whatever the gradient. Float32 weights of up to
        // 0.04 subtract to within 1e-8.
        var init64 = TestData.ToDouble(init.Data);
        var expectedStep = expected.Select((w, i) => w - init64[i]).ToArray();
        var step = result.Parameters.Data.Select((w, i) => w - init.Data[i]).ToArray();
        TestData.AssertClose(output, "the step of iteration 0", expectedStep, step, rtol: 1e-4, atol: 1e-8);
        Assert.Equal(7 * Math.Log(27) * 0.999 + 0.001 * result.Losses[0], result.SmoothedLoss, 1e-9);
    }

    [Fact]
    public void CourseWeightsAreNumpysSeed1Stream()
    {
        // The notebook's first weight: np.random.seed(1); np.random.randn() * 0.01.
        var p = Parameters.Initialize(new ModelShape(50, 27), InitScheme.Numpy, seed: 0);
        Assert.Equal((float)(1.6243453636632417 * 0.01), p.Wax[0]);
        Assert.Equal((float)(-0.6117564136500754 * 0.01), p.Wax[1]);
        Assert.All(p.B.ToArray(), x => Assert.Equal(0f, x));
    }

    /// <summary>
    /// The first 10,001 iterations print what the notebook printed: every sampled name exactly,
    /// every smoothed loss to its 6 printed decimals (± 1 in the last, float32 against float64).
    /// After that float32 rounding makes the run drift apart (the loss ends near 22.3 either way).
    /// </summary>
    [SkippableFact]
    public void TheFirstTenThousandIterationsPrintWhatTheNotebookPrinted()
    {
        string data = TestData.SharedData("dinos.txt");
        string expectedFile = TestData.SharedData("notebook_expected_output.txt");
        Skip.IfNot(File.Exists(data) && File.Exists(expectedFile), "../shared/data (the course's dinos.txt and notebook output) is absent");
        // Without FMA (x86 before AVX2) the multiply-adds round twice: as accurate, but the
        // float32 run then leaves the notebook's printed decimals after about 8,000 iterations.
        Skip.IfNot(CpuKernels.FusedMultiplyAdd, "this machine has no FMA: the cpu backend's float32 rounding differs from the published run's");
        var stdout = new StringWriter();
        var options = TrainOptions.Course with { Data = data, Iterations = 10_001, Device = "cpu" };
        new Trainer(options, stdout, TextWriter.Null).Run();

        var ours = stdout.ToString().Split('\n').Select(l => l.TrimEnd()).Where(l => l.Length > 0).ToList();
        var theirs = File.ReadAllLines(expectedFile).Where(l => l.Length > 0).ToList();
        for (int line = 0; line < 6 * 8; line += 8)
        {
            var mine = LossLine().Match(ours[line]);
            var published = LossLine().Match(theirs[line]);
            Assert.True(mine.Success && published.Success, $"{ours[line]} | {theirs[line]}");
            Assert.Equal(published.Groups[1].Value, mine.Groups[1].Value);
            double a = double.Parse(published.Groups[2].Value, CultureInfo.InvariantCulture);
            double b = double.Parse(mine.Groups[2].Value, CultureInfo.InvariantCulture);
            output.WriteLine($"iteration {mine.Groups[1].Value}: notebook {a:F6}, ours {b:F6}");
            Assert.Equal(a, b, 1.5e-6);
            Assert.Equal(theirs.Skip(line + 1).Take(7), ours.Skip(line + 1).Take(7));
        }
    }

    [GeneratedRegex(@"^Iteration: ([0-9]+), Loss: ([0-9.]+)")]
    private static partial Regex LossLine();
}
