// Line ends as text files have them: \n, \r\n, and a lone \r (old Mac files, which had read as one
// long name with \r inside), and data that is no text at all refused at its first NUL byte.
using System.Runtime.InteropServices;
using System.Text;
using GpuDinoRnn.Data;
using GpuDinoRnn.Tests.Cli;
using GpuDinoRnn.Tests.Hardening;

namespace GpuDinoRnn.Tests.Data;

public class LineEndTests
{
    private static Dataset Parse(string text, int maxNameLength = 1000) =>
        Dataset.Parse(Encoding.UTF8.GetBytes(text), "test.txt", maxNameLength: maxNameLength);

    [Theory]
    [InlineData("Aachenosaurus\rAardonyx\rabelisaurus\r")]
    [InlineData("Aachenosaurus\r\nAardonyx\r\nabelisaurus")]
    [InlineData("Aachenosaurus\nAardonyx\rabelisaurus\r\n")]
    [InlineData("Aachenosaurus\r\rAardonyx\r\n\r\nabelisaurus\n\r")] // blank lines between, every kind
    public void EveryKindOfLineEndEndsAName(string text) =>
        Assert.Equal(["aachenosaurus", "aardonyx", "abelisaurus"], Parse(text).Names);

    [Fact]
    public void LinesAreCountedAtEveryKindOfLineEnd()
    {
        // Line 4 is too long: after a \r, a \r\n and a \n.
        var e = Assert.Throws<UserError>(() => Parse("ab\rcd\r\nef\nabcdefgh\n", maxNameLength: 5));
        Assert.Equal("data: 'test.txt' line 4 is 8 characters long, more than --max-name-length 5", e.Message);
        e = Assert.Throws<UserError>(() => Dataset.Parse([.. "a\rb\r\r"u8, 0xC3, 0x28], "test.txt"));
        Assert.Equal("data: 'test.txt' line 4 is not valid UTF-8", e.Message);
    }

    [Fact]
    public void AContinuousTextHasItsLineEndsMadeNewlines()
    {
        using var dir = new CliRunner.TempDir();
        string data = dir.File("text.txt");
        File.WriteAllBytes(data, "ab\rcd\r\ref\n\r\n"u8.ToArray());
        Assert.Equal("ab\ncd\n\nef\n\n", Dataset.LoadText(data));
        File.WriteAllBytes(data, "ab\rcd\r"u8.ToArray());
        Assert.Equal("ab\ncd\n", Dataset.LoadText(data)); // the last line end kept
        File.WriteAllBytes(data, "ab\r\r\ncd"u8.ToArray());
        Assert.Equal("ab\n\ncd", Dataset.LoadText(data)); // \r then \r\n: two line ends, as Python reads them
    }

    [Fact]
    public void ADeviceOfZerosIsRefusedAtItsFirstByte()
    {
        // Reading stops at the first NUL, not after the 1 GiB limit (it had taken 21 s).
        Assert.Equal(1, Dataset.ReadFile("/dev/zero").Length);
        var e = Assert.Throws<UserError>(() => Dataset.Load("/dev/zero"));
        Assert.Equal("data: '/dev/zero' line 1 holds a NUL byte: is this a binary file?", e.Message);
    }

    [Fact]
    public void ANulByteFarIntoAFileIsReportedOnItsLine()
    {
        using var dir = new CliRunner.TempDir();
        string data = dir.File("names.txt");
        // 20,000 lines before the line with the NUL (a file is read whole: it says its length).
        var text = string.Concat(Enumerable.Repeat("abc\r\n", 20_000)) + "de\0f\nghi\n";
        File.WriteAllText(data, text);
        var bytes = Dataset.ReadFile(data);
        Assert.Equal(text.IndexOf('\0') + 1, bytes.Length);
        var e = Assert.Throws<UserError>(() => Dataset.Load(data));
        Assert.Equal($"data: '{data}' line 20001 holds a NUL byte: is this a binary file?", e.Message);
    }

    /// <summary>Through a pipe the data comes in reads of up to 64 KiB: the NUL here arrives in a later one, and reading stops there.</summary>
    [SkippableFact]
    public void ANulByteInALaterReadOfAPipeEndsTheReading()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "a named pipe (mkfifo)");
        using var dir = new CliRunner.TempDir();
        var text = Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat("abc\n", 50_000)) + "de\0f\n"); // the NUL past 195 KiB
        // Then more, which is never read: the reader stops at the NUL.
        var (fifo, writer) = Pipe(dir, text, "ghi\n"u8.ToArray(), repeats: 1 << 16);
        Assert.Equal(Array.IndexOf(text, (byte)0) + 1, Dataset.ReadFile(fifo).Length);
        Assert.True(writer.Wait(TimeSpan.FromSeconds(30)), "the writer was left blocked");
    }

    [SkippableFact]
    public void AnEndlessTextThroughAPipeIsRefusedAtTheLimit()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "a named pipe (mkfifo)");
        using var dir = new CliRunner.TempDir();
        var (fifo, writer) = Pipe(dir, [], "abc\n"u8.ToArray(), repeats: 1 << 20); // 4 MiB: far past the limit below
        var e = Assert.Throws<UserError>(() => Dataset.ReadFile(fifo, maxBytes: 1 << 20).Length);
        Assert.Equal($"data: '{fifo}' is larger than 1 MiB, the most this program reads", e.Message);
        Assert.True(writer.Wait(TimeSpan.FromSeconds(30)), "the writer was left blocked");
    }

    /// <summary>A named pipe that a task writes `head` into, then `line` `repeats` times, until the reader closes it.</summary>
    private static (string Path, Task Writer) Pipe(CliRunner.TempDir dir, byte[] head, byte[] line, int repeats)
    {
        string fifo = dir.File("names.fifo");
        Assert.True(InputEdgeTests.MkFifo(fifo, 0x1B6) == 0, $"mkfifo failed: errno {Marshal.GetLastPInvokeError()}"); // 0666
        var writer = Task.Run(() =>
        {
            try
            {
                using var pipe = new FileStream(fifo, FileMode.Open, FileAccess.Write, FileShare.ReadWrite); // no lock: the reader locks it shared
                pipe.Write(head);
                for (int i = 0; i < repeats; i++)
                    pipe.Write(line);
            }
            catch (IOException)
            {
                // the reader stopped and closed the pipe
            }
        });
        return (fifo, writer);
    }
}
