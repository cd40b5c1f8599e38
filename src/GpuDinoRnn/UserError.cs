// The one exception type for mistakes a user can make (bad options, files, devices).
// Its message is written for the user; the CLI prints it as one line and exits with ExitCode.
namespace GpuDinoRnn;

public sealed class UserError(string message, int exitCode = UserError.BadInput) : Exception(message)
{
    /// <summary>Bad options or input files.</summary>
    public const int BadInput = 2;
    /// <summary>A device was asked for that is absent, or failed.</summary>
    public const int DeviceError = 3;
    /// <summary>Writing output (a checkpoint) failed; what was there before is kept.</summary>
    public const int WriteError = 4;

    public int ExitCode { get; } = exitCode;
}
