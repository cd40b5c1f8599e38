// Whether the program reading standard output has gone (`gpudinornn sample --count 1000000 |
// head`). .NET ignores SIGPIPE and its console drops writes that fail with EPIPE, so without
// asking, a sampler would draw every name asked for into a pipe that no one reads.
using System.Runtime.InteropServices;

namespace GpuDinoRnn.Cli;

internal static partial class StandardOutput
{
    /// <summary>
    /// True when standard output is a pipe whose reading end is closed: poll(2) reports POLLERR
    /// for such a write end (Linux); a terminal, a file or an open pipe never does.
    /// </summary>
    public static bool ReaderGone()
    {
        if (!OperatingSystem.IsLinux())
            return false;
        var fd = new byte[8]; // struct pollfd: int fd = 1, short events = 0, short revents
        BitConverter.TryWriteBytes(fd.AsSpan(0, 4), 1);
        return Poll(fd, 1, 0) == 1 && (BitConverter.ToInt16(fd, 6) & PollError) != 0;
    }

    private const short PollError = 0x8;

    [LibraryImport("libc", EntryPoint = "poll")]
    private static partial int Poll([In, Out] byte[] fds, nuint count, int timeout);
}
