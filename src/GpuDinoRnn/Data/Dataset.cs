// A list of names read from a text file (one per line), and its seeded train/validation split.
using System.Text;

namespace GpuDinoRnn.Data;

public sealed class Dataset
{
    /// <summary>The largest data file read: a larger one, or a device that never ends (/dev/zero), is an error, not an out-of-memory crash.</summary>
    public const int MaxBytes = 1 << 30;

    public Dataset(IReadOnlyList<string> names, string source)
    {
        Names = names;
        Source = source;
    }

    public IReadOnlyList<string> Names { get; }
    public string Source { get; }

    /// <summary>
    /// Reads one name per line (lines end in \n, \r\n or a lone \r): UTF-8, lines stripped, lower-cased unless keepCase, blank lines
    /// skipped, duplicates kept. Every problem is a UserError naming the file (and line).
    /// </summary>
    /// <param name="limit">What maxNameLength is, for the message: by default train's option; eval and sample have none.</param>
    public static Dataset Load(string path, bool keepCase = false, int maxNameLength = 1000, string? limit = null)
    {
        return Parse(ReadFile(path), path, keepCase, maxNameLength, limit);
    }

    internal static ReadOnlySpan<byte> ReadFile(string path, int maxBytes = MaxBytes)
    {
        if (Directory.Exists(path))
            throw new UserError($"data: '{path}' is a directory, not a file of names");
        if (!File.Exists(path))
            throw new UserError($"data: file '{path}' not found");
        try
        {
            using var stream = File.OpenRead(path);
            if (stream.CanSeek && stream.Length > maxBytes)
                throw TooLarge(path, maxBytes);
            // Room for one byte more than the file says it has, to see its end (or that it grew); /proc files
            // and devices say 0. Reading stops one byte past the limit, or at a NUL byte: no text
            // holds one, and Lines says which line it is on (/dev/zero is refused at once, not after 1 GiB).
            var buffer = new byte[stream.CanSeek && stream.Length > 0 ? stream.Length + 1 : 1 << 16];
            int length = 0, read;
            while ((read = stream.Read(buffer, length, Math.Min(buffer.Length - length, maxBytes + 1 - length))) > 0)
            {
                int nul = buffer.AsSpan(length, read).IndexOf((byte)0);
                if (nul >= 0)
                    return buffer.AsSpan(0, length + nul + 1);
                length += read;
                if (length > maxBytes)
                    throw TooLarge(path, maxBytes);
                if (length == buffer.Length)
                    Array.Resize(ref buffer, (int)Math.Min(2L * buffer.Length, maxBytes + 1L));
            }
            return buffer.AsSpan(0, length);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserError($"data: cannot read '{path}': {e.Message}");
        }
    }

    private static UserError TooLarge(string path, int maxBytes) =>
        new($"data: '{path}' is larger than {(maxBytes >= 1 << 30 ? $"{maxBytes >> 30} GiB" : $"{maxBytes >> 20} MiB")}, the most this program reads");

    public static Dataset Parse(ReadOnlySpan<byte> bytes, string source, bool keepCase = false, int maxNameLength = 1000, string? limit = null)
    {
        limit ??= $"--max-name-length {maxNameLength}";
        var names = new List<string>();
        foreach (var (lineNumber, line) in Lines(bytes, source))
        {
            string text = line.Trim();
            if (text.Length == 0)
                continue;
            if (text.Length > maxNameLength)
                throw new UserError($"data: '{source}' line {lineNumber} is {text.Length} characters long, more than {limit}");
            names.Add(keepCase ? text : text.ToLowerInvariant());
        }
        if (names.Count == 0)
            throw new UserError($"data: '{source}' holds no names (it is empty or only blank lines)");
        return new Dataset(names, source);
    }

    /// <summary>
    /// A whole text for continuous-text mode: UTF-8 checked line by line as for names, line ends
    /// (\n, \r\n or \r) normalised to '\n', nothing else changed (case, blank lines and a final line end kept).
    /// </summary>
    public static string LoadText(string path)
    {
        var bytes = ReadFile(path);
        var text = string.Join('\n', Lines(bytes, path).Select(l => l.Text));
        if (bytes.EndsWith("\n"u8) || bytes.EndsWith("\r"u8))
            text += "\n"; // Lines yields no empty line after the last line end
        if (text.Length == 0)
            throw new UserError($"data: '{path}' is empty");
        return text;
    }

    /// <summary>
    /// Each line decoded as strict UTF-8 (a BOM skipped), with its 1-based number. A line ends in
    /// \n, \r\n or a lone \r (old Mac files), as Python's universal newlines read them.
    /// </summary>
    private static List<(int Number, string Text)> Lines(ReadOnlySpan<byte> bytes, string source)
    {
        if (bytes.StartsWith(Encoding.UTF8.Preamble))
            bytes = bytes[Encoding.UTF8.Preamble.Length..];
        var strict = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        var lines = new List<(int, string)>();
        int lineNumber = 0;
        while (!bytes.IsEmpty)
        {
            lineNumber++;
            int end = bytes.IndexOfAny((byte)'\n', (byte)'\r');
            var line = end >= 0 ? bytes[..end] : bytes;
            int next = end < 0 ? bytes.Length : end + (bytes[end] == '\r' && end + 1 < bytes.Length && bytes[end + 1] == '\n' ? 2 : 1);
            bytes = bytes[next..];
            string text;
            try
            {
                text = strict.GetString(line);
            }
            catch (DecoderFallbackException)
            {
                throw new UserError($"data: '{source}' line {lineNumber} is not valid UTF-8");
            }
            if (text.Contains('\0'))
                throw new UserError($"data: '{source}' line {lineNumber} holds a NUL byte: is this a binary file?");
            lines.Add((lineNumber, text));
        }
        return lines;
    }

    /// <summary>
    /// Splits off a validation set: a seeded random choice of round(fraction·N) names (at least
    /// one when fraction &gt; 0 and N &gt; 1); the rest, in file order, is the training set.
    /// </summary>
    public (IReadOnlyList<string> Train, IReadOnlyList<string> Validation) Split(double fraction, int seed)
    {
        if (fraction <= 0 || Names.Count < 2)
            return (Names, []);
        int valCount = Math.Clamp((int)Math.Round(fraction * Names.Count), 1, Names.Count - 1);
        var order = Enumerable.Range(0, Names.Count).ToArray();
        new Random(seed).Shuffle(order);
        var isVal = new bool[Names.Count];
        foreach (int i in order.AsSpan(0, valCount))
            isVal[i] = true;
        var train = new List<string>();
        var val = new List<string>();
        for (int i = 0; i < Names.Count; i++)
            (isVal[i] ? val : train).Add(Names[i]);
        return (train, val);
    }
}
