// Edges of the input a black-box probe found: checkpoint paths that are not regular files or
// whose folder is missing, huge or interrupted sampling, non-finite optimizer numbers, and
// messages that named the file twice or an option the verb does not have.
using System.Diagnostics;
using System.Runtime.InteropServices;
using GpuDinoRnn.Checkpoints;
using GpuDinoRnn.Tests.Hardening;
using GpuDinoRnn.Tests.Reference;
using GpuDinoRnn.Training;
using Xunit.Abstractions;

namespace GpuDinoRnn.Tests.Cli;

public partial class InputEdgeTests(ITestOutputHelper output)
{
    private static readonly string[] Quick = ["--data", TestData.BundledNames, "--device", "cpu", "--iterations", "2", "--hidden", "8", "--sample-count", "0"];

    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", name);

    [LibraryImport("libc", EntryPoint = "mkfifo", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int MkFifo(string path, uint mode);

    [SkippableFact]
    public void AFifoIsNotReplacedByTheCheckpoint()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "the file type is asked of Linux (statx)");
        using var dir = new CliRunner.TempDir();
        string fifo = dir.File("model.fifo");
        Assert.True(MkFifo(fifo, 0x1B6) == 0, $"mkfifo failed: errno {Marshal.GetLastPInvokeError()}"); // 0666
        // Refused before training, with --overwrite or without (it is no file to overwrite).
        CliRunner.AssertOneLineError(output, ["train", .. Quick, "--checkpoint", fifo, "--overwrite"], 2, $"--checkpoint '{fifo}' is a FIFO (named pipe), not a regular file");
        CliRunner.AssertOneLineError(output, ["train", .. Quick, "--checkpoint", fifo], 2, "is a FIFO (named pipe)");
        Assert.Equal("a FIFO (named pipe)", CheckpointTarget.SpecialFileKind(fifo)); // still there, still a FIFO
        Assert.False(File.Exists(CheckpointTarget.LockPath(fifo)));
    }

    [Fact]
    public void ASymbolicLinkIsNotReplacedByTheCheckpointNorItsTarget()
    {
        using var dir = new CliRunner.TempDir();
        string real = dir.File("real.safetensors"), link = dir.File("link.safetensors");
        File.WriteAllText(real, "the user's file");
        File.CreateSymbolicLink(link, real);
        CliRunner.AssertOneLineError(output, ["train", .. Quick, "--checkpoint", link, "--overwrite"], 2,
            $"--checkpoint '{link}' is a symbolic link (to '{real}'); name the file it points to");
        Assert.Equal(real, new FileInfo(link).LinkTarget);
        Assert.Equal("the user's file", File.ReadAllText(real));

        // --resume writes back to the file it continues: through a link it is refused the same way.
        File.Delete(real);
        Assert.Equal(0, CliRunner.Run(output, ["train", .. Quick, "--checkpoint", real]).Code);
        var before = File.ReadAllBytes(real);
        CliRunner.AssertOneLineError(output, ["train", "--resume", link, "--iterations", "4", "--device", "cpu"], 2, $"--resume '{link}' is a symbolic link");
        Assert.Equal(real, new FileInfo(link).LinkTarget);
        Assert.Equal(before, File.ReadAllBytes(real));
    }

    [Fact]
    public void ACheckpointInAMissingFolderIsOneLineBeforeTraining()
    {
        using var dir = new CliRunner.TempDir();
        string missing = Path.Combine(dir.Path, "nodir");
        CliRunner.AssertOneLineError(output, ["train", .. Quick, "--checkpoint", Path.Combine(missing, "x.safetensors")], 2,
            $"the folder '{missing}' does not exist");
        Assert.False(Directory.Exists(missing));
    }
}
