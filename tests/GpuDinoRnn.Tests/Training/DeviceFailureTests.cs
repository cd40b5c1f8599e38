// A device that fails in the middle of a run (a kernel's illegal address, a driver reset): one
// line that says what the checkpoint holds, exit code 3, and the checkpoint kept. No GPU here can
// be made to fail, so the real cpu backend is wrapped in one that fails on cue, the way CUDA does:
// the error shows at the next call that waits for the device, and every call after it fails too.
using GpuDinoRnn.Backends;
using GpuDinoRnn.Checkpoints;
using GpuDinoRnn.Data;
using GpuDinoRnn.Model;
using GpuDinoRnn.Tests.Hardening;
using GpuDinoRnn.Tests.Reference;
using GpuDinoRnn.Training;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace GpuDinoRnn.Tests.Training;

public class DeviceFailureTests
{
    /// <summary>What ILGPU throws for a failed CUDA call (CudaException asks the driver for its text).</summary>
    private sealed class DeviceFault() : AcceleratorException("an illegal memory access was encountered")
    {
        public override AcceleratorType AcceleratorType => AcceleratorType.Cuda;
    }

    /// <summary>
    /// The cpu backend on a device that faults in the step of one iteration: every call after it
    /// fails, as CUDA's do once a kernel has faulted (the run's first step is the rehearsal's).
    /// </summary>
    private sealed class FailingBackend(IBackend inner, int faultAt) : IBackend
    {
        private int _steps;

        private void Check()
        {
            if (_steps > faultAt + 1)
                throw new DeviceFault();
        }

        public string Device => "cuda (a failing GPU)";
        public int LaunchesPerStep => inner.LaunchesPerStep;
        public ModelShape Shape => inner.Shape;
        public void Upload(Parameters parameters) { Check(); inner.Upload(parameters); }
        public void Download(Parameters parameters) { Check(); inner.Download(parameters); }
        public void Step(Batch batch, StepSettings settings) { Check(); _steps++; inner.Step(batch, settings); }
        public float[] TakeLosses() { Check(); return inner.TakeLosses(); }
        public float Gradients(Batch batch, bool carryState, Span<float> gradients) { Check(); return inner.Gradients(batch, carryState, gradients); }
        public double EvaluateSum(Batch batch) { Check(); return inner.EvaluateSum(batch); }
        public void ResetState() { Check(); inner.ResetState(); }
        public float LastGradientNorm() { Check(); return inner.LastGradientNorm(); }
        public void DownloadGradients(Span<float> gradients) { Check(); inner.DownloadGradients(gradients); }
        public BackendState SaveState() { Check(); return inner.SaveState(); }
        public void LoadState(BackendState state) { Check(); inner.LoadState(state); }
        public void Dispose() => inner.Dispose();
    }

    private static TrainOptions Options(string? checkpoint) => new()
    {
        Data = TestData.BundledNames,
        Device = "cpu",
        Threads = 1,
        Hidden = 16,
        Batch = 4,
        Iterations = 100,
        LogEvery = 10,
        CheckpointEvery = checkpoint is null ? 0 : 20,
        Checkpoint = checkpoint,
        SampleCount = 0,
        ValFraction = 0,
    };

    [Theory]
    [InlineData(57, 58, 40)] // the next step's launch fails
    [InlineData(99, 99, 80)] // the last step: the losses read after it fail
    public void AFailedDeviceIsOneLineWithExitCode3AndTheLastCheckpointIsKept(int faultAt, int noticedAt, int kept)
    {
        using var dir = new CliRunner.TempDir();
        string path = dir.File("model.safetensors");
        var trainer = new Trainer(Options(path), TextWriter.Null, TextWriter.Null) { WrapBackend = b => new FailingBackend(b, faultAt) };

        var error = Assert.Throws<UserError>(() => trainer.Run());

        Assert.Equal(UserError.DeviceError, error.ExitCode);
        Assert.Equal($"cuda (a failing GPU) failed by iteration {noticedAt}: an illegal memory access was encountered; " +
                     $"the checkpoint from iteration {kept} in '{path}' is kept; try --device cpu", error.Message);
        Assert.Equal(kept.ToString(), Checkpoint.Load(path).Metadata["iteration"]);
        Assert.Equal(["model.safetensors"], Directory.GetFiles(dir.Path).Select(Path.GetFileName));
    }

    [Theory]
    [InlineData(true, "'{0}' was left as it was")]
    [InlineData(false, "no checkpoint was asked for")]
    public void AFailureBeforeAnyCheckpointSaysSo(bool withCheckpoint, string kept)
    {
        using var dir = new CliRunner.TempDir();
        string path = dir.File("model.safetensors");
        var trainer = new Trainer(Options(withCheckpoint ? path : null), TextWriter.Null, TextWriter.Null)
        {
            WrapBackend = b => new FailingBackend(b, faultAt: 5),
        };

        var error = Assert.Throws<UserError>(() => trainer.Run());

        Assert.Equal(UserError.DeviceError, error.ExitCode);
        Assert.Equal("cuda (a failing GPU) failed by iteration 6: an illegal memory access was encountered; " +
                     string.Format(kept, path) + "; try --device cpu", error.Message);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void AFailureAsAResumedRunStartsSaysTheResumedCheckpointIsKept()
    {
        using var dir = new CliRunner.TempDir();
        string path = dir.File("model.safetensors");
        new Trainer(Options(path) with { Iterations = 40 }, TextWriter.Null, TextWriter.Null).Run();
        var resumed = TrainOptions.ForResume(path, Checkpoint.Load(path).Metadata) with { Iterations = 100 };
        // Failed before its first step: the weights' upload is the first call.
        var trainer = new Trainer(resumed, TextWriter.Null, TextWriter.Null) { WrapBackend = b => new FailingBackend(b, faultAt: -2) };

        var error = Assert.Throws<UserError>(() => trainer.Run());

        Assert.Equal($"cuda (a failing GPU) failed by iteration 40: an illegal memory access was encountered; " +
                     $"the checkpoint from iteration 40 in '{path}' is kept; try --device cpu", error.Message);
        Assert.IsType<DeviceFault>(error.InnerException);
        Assert.Equal("40", Checkpoint.Load(path).Metadata["iteration"]);
    }

    [Fact]
    public void OnlyTheDriversOutOfMemoryErrorsReadAsOutOfMemory()
    {
        Assert.True(DeviceMemory.OutOfMemory(new CLException(CLError.CL_MEM_OBJECT_ALLOCATION_FAILURE)));
        Assert.True(DeviceMemory.OutOfMemory(new CLException(CLError.CL_OUT_OF_HOST_MEMORY)));
        // A fault of an earlier kernel that shows at an allocation is the device failing
        // (NVIDIA's OpenCL reports one as CL_OUT_OF_RESOURCES).
        Assert.False(DeviceMemory.OutOfMemory(new CLException(CLError.CL_OUT_OF_RESOURCES)));
        Assert.False(DeviceMemory.OutOfMemory(new CLException(CLError.CL_INVALID_COMMAND_QUEUE)));
        // CUDA's out-of-memory case cannot be built here: CudaException(CudaError) asks the driver for its text.
        Assert.False(DeviceMemory.OutOfMemory(new CudaException("an illegal memory access was encountered")));
        Assert.False(DeviceMemory.OutOfMemory(new DeviceFault()));
    }

    /// <summary>A buffer of a failed device: freeing it throws, as CUDA's free does after a fault.</summary>
    private sealed class FailedBuffer : IDisposable
    {
        public void Dispose() => throw new DeviceFault();
    }

    private sealed class Buffer : IDisposable
    {
        public bool Disposed { get; private set; }
        public void Dispose() => Disposed = true;
    }

    [Fact]
    public void ReleasingAFailedDevicesBuffersFreesTheRestAndThrowsNothing()
    {
        var (before, after) = (new Buffer(), new Buffer());

        DeviceMemory.Release(before, new FailedBuffer(), null, after);

        Assert.True(before.Disposed);
        Assert.True(after.Disposed);
    }

    [Fact]
    public void ReleasingLetsOtherErrorsThrough()
    {
        var after = new Buffer();
        Assert.Throws<InvalidOperationException>(() => DeviceMemory.Release(new Thrower(), after));
    }

    private sealed class Thrower : IDisposable
    {
        public void Dispose() => throw new InvalidOperationException("a bug, not a device");
    }

    [Fact]
    public void OnlyAcceleratorErrorsCountAsAFailedDevice()
    {
        Assert.True(Devices.Failed(new DeviceFault()));
        Assert.False(Devices.Failed(new InvalidOperationException()));
        Assert.False(Devices.Failed(new UserError("bad input")));
    }
}
