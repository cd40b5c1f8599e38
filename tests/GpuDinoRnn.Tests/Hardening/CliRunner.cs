// Runs the CLI the two ways the hardening tests need: in-process through Program.Run (the
// real entry point, output captured) and as a real child process (for signals).
using System.Diagnostics;
using System.Runtime.InteropServices;
using GpuDinoRnn.Cli;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Hardening;

public static partial class CliRunner
{
    public static (int Code, string Out, string Err) Run(ITestOutputHelper? output, params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, stdout, stderr);
        output?.WriteLine($"$ gpudinornn {string.Join(' ', args)} → {code}\n{stderr}");
        return (code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>The run fails with exitCode and one line, "gpudinornn: error: …fragment…", no stack frame, no output.</summary>
    public static void AssertOneLineError(ITestOutputHelper? output, string[] args, int exitCode, string fragment)
    {
        var (code, stdout, stderr) = Run(output, args);
        Assert.Equal(exitCode, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("gpudinornn: error: ", line);
        Assert.Contains(fragment, line);
        Assert.DoesNotMatch(@"\bat [A-Za-z_.]+\(", line); // no stack frame
        Assert.Equal("", stdout);
    }

    /// <summary>The apphost built next to the tests (the test project references the CLI).</summary>
    public static string Executable => Path.Combine(AppContext.BaseDirectory, "gpudinornn");

    public static Process Start(params string[] args)
    {
        var psi = new ProcessStartInfo(Executable, args)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        return Process.Start(psi) ?? throw new InvalidOperationException("could not start gpudinornn");
    }

    public static void Signal(Process process, int signal)
    {
        if (Kill(process.Id, signal) != 0)
            throw new InvalidOperationException($"kill({process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    public const int SigInt = 2, SigTerm = 15;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    /// <summary>A fresh folder removed when disposed.</summary>
    public sealed class TempDir : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("gpudinornn-hard").FullName;

        public string File(string name) => System.IO.Path.Combine(Path, name);

        public void Dispose()
        {
            try
            {
                Directory.Delete(Path, recursive: true);
            }
            catch (IOException)
            {
                // A mount point (the disk-full test) is unmounted by its test first.
            }
        }
    }
}
