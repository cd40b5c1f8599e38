// The trainer's untimed first step (Trainer.Rehearse) leaves no trace: a backend that rehearsed
// goes on to the very bits of one that did not, and the data hands out the same batches.
using GpuDinoRnn.Backends;
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;
using GpuDinoRnn.Tests.Reference;
using GpuDinoRnn.Training;

namespace GpuDinoRnn.Tests.Training;

public class RehearsalTests
{
    private const int V = 27;

    [Theory]
    [InlineData("cpu", 1, CellKind.Rnn, 1, 0f, 1, true, false)]      // the course's shape: batch 1, carried state
    [InlineData("cpu", 1, CellKind.Rnn, 1, 0f, 32, false, false)]    // a batch cut into chunks
    [InlineData("cpu", 2, CellKind.Rnn, 1, 0f, 32, false, false)]    // chunks on per-thread replicas
    [InlineData("cpu", 2, CellKind.Rnn, 1, 0f, 4, true, true)]       // continuous text
    [InlineData("cpu", 2, CellKind.Gru, 2, 0.2f, 16, false, false)]  // stacked cells with dropout
    [InlineData("cpu", 1, CellKind.Lstm, 1, 0f, 4, true, false)]
    [InlineData("ilgpu-cpu", 2, CellKind.Rnn, 1, 0f, 4, true, false)]
    [InlineData("ilgpu-cpu", 2, CellKind.Lstm, 2, 0.2f, 8, false, false)]
    public void ARehearsedRunGoesOnWithTheSameBits(string device, int threads, CellKind cell, int layers, float dropout, int batch,
        bool carry, bool text)
    {
        var shape = new ModelShape(12, V, cell, layers);
        var parameters = TestData.RandomParameters(shape, seed: 3, scale: 0.3);
        var settings = new StepSettings(0.01f, 5f, ClipMode.Norm, carry, new OptimizerConfig(OptimizerKind.Adam));
        var dropoutConfig = new DropoutConfig(dropout, 7);
        using var rehearsed = Devices.Create(device, shape, threads, dropout: dropoutConfig);
        using var plain = Devices.Create(device, shape, threads, dropout: dropoutConfig);
        var rehearsedData = Data(batch, text);
        var plainData = Data(batch, text);
        rehearsed.Upload(parameters);
        plain.Upload(parameters);

        // A few steps first, so that moments, the update count and carried states are not zeros.
        Steps(3, (rehearsed, rehearsedData), (plain, plainData), settings);
        Assert.Equal(plain.TakeLosses(), rehearsed.TakeLosses());
        rehearsed.Download(parameters);
        Trainer.Rehearse(rehearsed, rehearsedData, parameters, settings with { LearningRate = 0.5f });
        Steps(5, (rehearsed, rehearsedData), (plain, plainData), settings);

        Assert.Equal(plain.TakeLosses(), rehearsed.TakeLosses());
        var (p, r) = (new Parameters(shape), new Parameters(shape));
        plain.Download(p);
        rehearsed.Download(r);
        Assert.Equal(p.Data, r.Data);
        var (ps, rs) = (plain.SaveState(), rehearsed.SaveState());
        Assert.Equal(8, rs.Updates);
        Assert.Equal(ps.Updates, rs.Updates);
        Assert.Equal(ps.M, rs.M);
        Assert.Equal(ps.V, rs.V);
        Assert.Equal(ps.Carry, rs.Carry);
        Assert.Equal(carry, rs.Carry.Length > 0);
        Assert.Equal(plainData.State.Position, rehearsedData.State.Position);
    }

    private static void Steps(int count, (IBackend Backend, TrainingData Data) a, (IBackend Backend, TrainingData Data) b, StepSettings settings)
    {
        for (int i = 0; i < count; i++)
        {
            foreach (var (backend, data) in new[] { a, b })
            {
                var batch = data.Next(out bool reset);
                if (reset)
                    backend.ResetState();
                backend.Step(batch, settings);
            }
        }
    }

    private static TrainingData Data(int batch, bool text)
    {
        var names = TestData.RandomNames(200, V, seed: 5, minLength: 2, maxLength: 12);
        if (text)
            return TrainingData.ForText(names.SelectMany(n => n).ToArray(), [], batch, seqLength: 16);
        return TrainingData.ForNames(names, [], batch, ShuffleMode.Epoch, seed: 9);
    }
}
