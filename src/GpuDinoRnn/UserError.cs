// The one exception type for mistakes a user can make (bad options, files, devices).
// Its message is written for the user; the CLI prints it as one line and exits with ExitCode.
namespace GpuDinoRnn;

/// <param name="cause">What a device threw, printed whole with GPUDINORNN_TRACE=1.</param>
public sealed class UserError(string message, int exitCode = UserError.BadInput, Exception? cause = null) : Exception(message, cause)
{
    /// <summary>Bad options or input files.</summary>
    public const int BadInput = 2;
    /// <summary>A device failed: it could not start, its kernels did not compile, it ran out of memory or failed while running (an absent one is BadInput).</summary>
    public const int DeviceError = 3;
    /// <summary>Writing output (a checkpoint) failed; what was there before is kept.</summary>
    public const int WriteError = 4;
    /// <summary>Training diverged (a non-finite loss); the last good checkpoint is kept.</summary>
    public const int Diverged = 5;
    /// <summary>Stopped by Ctrl-C (SIGINT) or SIGTERM after writing the checkpoint: 128 + 2, as shells report it.</summary>
    public const int Interrupted = 130;
    /// <summary>`sample`'s reader went away (| head): 128 + 13, as a tool ended by SIGPIPE exits.</summary>
    public const int ReaderGone = 141;

    public int ExitCode { get; } = exitCode;
}
