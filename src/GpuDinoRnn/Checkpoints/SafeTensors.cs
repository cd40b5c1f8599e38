// The safetensors file format (https://github.com/huggingface/safetensors), and nothing about models:
// 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON describing each tensor
// ({"dtype", "shape", "data_offsets"} plus an optional "__metadata__" of strings), then the raw
// row-major little-endian data. We write F32 only; we read F32 and F64 (F64 is narrowed to float).
// Files come from users, so reading validates everything and reports any fault as a one-line UserError.
using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Unicode;

namespace GpuDinoRnn.Checkpoints;

/// <summary>A named tensor; <paramref name="Data"/> is row-major with length = product of <paramref name="Shape"/>.</summary>
public sealed record Tensor(string Name, int[] Shape, float[] Data);

/// <summary>The contents of a safetensors file. Tensors are listed in the order of their data in the file.</summary>
public sealed record SafeTensorsFile(IReadOnlyList<Tensor> Tensors, IReadOnlyDictionary<string, string> Metadata)
{
    /// <summary>The tensor called <paramref name="name"/>, or null if the file has none.</summary>
    public Tensor? Find(string name)
    {
        foreach (var t in Tensors)
        {
            if (t.Name == name)
            {
                return t;
            }
        }
        return null;
    }
}

public static class SafeTensors
{
    /// <summary>Larger headers are refused before anything is allocated for them (the reference reader uses the same limit).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    const string MetadataKey = "__metadata__";

    /// <summary>
    /// Writes atomically: a temp file in the same folder is filled, flushed to disk and then renamed over
    /// <paramref name="path"/>, so a crash or failure never leaves a half-written checkpoint, and the old one stays.
    /// Throws UserError (WriteError) if the file cannot be written; ArgumentException for invalid tensors.
    /// </summary>
    public static void Write(string path, IEnumerable<Tensor> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        // Serialize first: a programming error in the tensors must not touch the disk at all.
        byte[] bytes = Serialize(tensors, metadata);
        string? tmp = null;
        try
        {
            string full = Path.GetFullPath(path);
            string dir = Path.GetDirectoryName(full) ?? throw new IOException("it has no parent folder");
            tmp = Path.Combine(dir, Path.GetFileName(full) + ".tmp-" + Guid.NewGuid().ToString("N")[..12]);
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                fs.Write(bytes);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            if (tmp != null)
            {
                // Best effort: the write error is what the user needs to see.
                try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            }
            throw new UserError(OneLine($"cannot write checkpoint '{path}': {e.Message}"), UserError.WriteError);
        }
    }

    /// <summary>The exact bytes <see cref="Write"/> writes: F32 tensors in the given order, contiguous, data 8-byte aligned.</summary>
    public static byte[] Serialize(IEnumerable<Tensor> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        var list = tensors.ToList();
        var names = new HashSet<string>(StringComparer.Ordinal);
        var json = new ArrayBufferWriter<byte>();
        long dataBytes = 0;
        // Relaxed escaping keeps metadata such as a vocabulary readable; quotes and control characters are still escaped.
        using (var w = new Utf8JsonWriter(json, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            if (metadata.Count > 0)
            {
                w.WriteStartObject(MetadataKey);
                // Sorted so the same checkpoint always gives the same bytes, whatever the dictionary's order.
                foreach (var (key, value) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    w.WriteString(key, value);
                }
                w.WriteEndObject();
            }
            foreach (var t in list)
            {
                if (t.Name == MetadataKey || !names.Add(t.Name))
                {
                    throw new ArgumentException($"tensor name '{t.Name}' is reserved or used twice", nameof(tensors));
                }
                long count = 1;
                foreach (int d in t.Shape)
                {
                    count = d >= 0 ? checked(count * d) : throw new ArgumentException($"tensor '{t.Name}' has a negative dimension", nameof(tensors));
                }
                if (count != t.Data.Length)
                {
                    throw new ArgumentException($"tensor '{t.Name}' has {t.Data.Length} values but shape [{string.Join(",", t.Shape)}]", nameof(tensors));
                }
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", "F32");
                w.WriteStartArray("shape");
                foreach (int d in t.Shape)
                {
                    w.WriteNumberValue(d);
                }
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(dataBytes);
                dataBytes += 4L * t.Data.Length;
                w.WriteNumberValue(dataBytes);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }

        // Pad the header with spaces (allowed by the format) so the data starts 8-byte aligned, for mmap-style readers.
        int headerLen = (json.WrittenCount + 7) / 8 * 8;
        long total = 8 + headerLen + dataBytes;
        if (total > Array.MaxLength)
        {
            throw new ArgumentException($"tensors total {dataBytes} bytes, too many for one buffer", nameof(tensors));
        }
        var bytes = new byte[total];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)headerLen);
        json.WrittenSpan.CopyTo(bytes.AsSpan(8));
        bytes.AsSpan(8 + json.WrittenCount, headerLen - json.WrittenCount).Fill((byte)' ');
        int pos = 8 + headerLen;
        foreach (var t in list)
        {
            foreach (float f in t.Data)
            {
                BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(pos), f);
                pos += 4;
            }
        }
        return bytes;
    }

    /// <summary>
    /// Whether an existing regular file starts as a safetensors file does (a header length that
    /// fits the file, then '{'): a model, which a tool writing its results there must not replace.
    /// </summary>
    public static bool LooksLike(string path)
    {
        try
        {
            if (!File.Exists(path) || CheckpointTarget.SpecialFileKind(path, followLinks: true) is not null)
                return false;
            using var file = File.OpenRead(path);
            Span<byte> start = stackalloc byte[9];
            if (file.ReadAtLeast(start, 9, throwOnEndOfStream: false) < 9)
                return false;
            ulong header = BinaryPrimitives.ReadUInt64LittleEndian(start);
            return header >= 2 && header <= (ulong)file.Length - 8 && start[8] == (byte)'{';
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false; // unreadable: writing it will say why
        }
    }

    /// <summary>Reads and validates a safetensors file; any problem is a UserError (BadInput) naming the file.</summary>
    public static SafeTensorsFile Read(string path)
    {
        string source = $"checkpoint '{path}'";
        byte[] bytes;
        try
        {
            if (Directory.Exists(path))
            {
                throw Bad(source, "is a directory, not a file");
            }
            if (!File.Exists(path))
            {
                throw Bad(source, "does not exist");
            }
            // Reading a FIFO would wait for a writer, and a device such as /dev/zero never ends.
            if (CheckpointTarget.SpecialFileKind(path, followLinks: true) is { } kind)
            {
                throw Bad(source, $"is {kind}, not a file");
            }
            if (new FileInfo(path).Length > Array.MaxLength)
            {
                throw Bad(source, "is too large to load");
            }
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw Bad(source, $"cannot be read: {e.Message}");
        }
        return Parse(bytes, source);
    }

    /// <summary>Parses and validates safetensors bytes; <paramref name="sourceName"/> starts every error message.</summary>
    public static SafeTensorsFile Parse(ReadOnlySpan<byte> bytes, string sourceName)
    {
        if (bytes.Length == 0)
        {
            throw Bad(sourceName, "is empty");
        }
        if (bytes.Length < 8)
        {
            throw Bad(sourceName, $"is only {bytes.Length} bytes; a safetensors file starts with an 8-byte header length");
        }
        ulong headerLen = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLen > MaxHeaderBytes)
        {
            throw Bad(sourceName, $"header length {headerLen} is larger than the limit of {MaxHeaderBytes} bytes (not a safetensors file?)");
        }
        if (headerLen > (ulong)(bytes.Length - 8))
        {
            throw Bad(sourceName, $"header length {headerLen} is larger than the file ({bytes.Length} bytes); truncated or not a safetensors file");
        }
        var header = bytes.Slice(8, (int)headerLen);
        var data = bytes[(8 + (int)headerLen)..];
        if (!Utf8.IsValid(header))
        {
            throw Bad(sourceName, "header is not valid UTF-8");
        }

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header.ToArray());
        }
        catch (JsonException e)
        {
            throw Bad(sourceName, $"header is not valid JSON: {e.Message}");
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw Bad(sourceName, $"header is a JSON {Kind(doc.RootElement)}, not an object");
            }
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var entries = new List<Entry>();
            try
            {
                ReadHeader(doc.RootElement, metadata, entries, data.Length, sourceName);
            }
            catch (InvalidOperationException e)
            {
                // JsonDocument only reports escaped lone surrogates ("\ud800") when a string is decoded.
                throw Bad(sourceName, $"header has a string that is not valid text: {e.Message}");
            }

            // File order; ties (empty tensors) keep header order.
            entries.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.Index.CompareTo(b.Index));
            var prevEnd = 0L;
            string? prevName = null;
            foreach (var e in entries)
            {
                // Empty tensors occupy no bytes and so cannot overlap anything.
                if (e.Begin == e.End)
                {
                    continue;
                }
                if (prevName != null && e.Begin < prevEnd)
                {
                    throw Bad(sourceName, $"tensors {Q(prevName)} and {Q(e.Name)} overlap in the data");
                }
                prevEnd = e.End;
                prevName = e.Name;
            }

            var tensors = new List<Tensor>(entries.Count);
            foreach (var e in entries)
            {
                var src = data[(int)e.Begin..(int)e.End];
                float[] values;
                if (e.DType == "F32")
                {
                    values = new float[src.Length / 4];
                    for (int i = 0; i < values.Length; i++)
                    {
                        values[i] = BinaryPrimitives.ReadSingleLittleEndian(src[(4 * i)..]);
                    }
                }
                else
                {
                    values = new float[src.Length / 8];
                    for (int i = 0; i < values.Length; i++)
                    {
                        values[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(src[(8 * i)..]);
                    }
                }
                tensors.Add(new Tensor(e.Name, e.Shape, values));
            }
            return new SafeTensorsFile(tensors, metadata);
        }
    }

    // One tensor's header entry, validated against the data buffer; Index is its position in the header.
    readonly record struct Entry(string Name, int[] Shape, string DType, long Begin, long End, int Index);

    static void ReadHeader(JsonElement root, Dictionary<string, string> metadata, List<Entry> entries, int dataLength, string source)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var prop in root.EnumerateObject())
        {
            // JsonDocument keeps duplicate keys; a second entry with the same name would be ambiguous.
            if (!seen.Add(prop.Name))
            {
                throw Bad(source, $"header lists {Q(prop.Name)} twice");
            }
            if (prop.Name == MetadataKey)
            {
                ReadMetadata(prop.Value, metadata, source);
            }
            else
            {
                entries.Add(ReadEntry(prop.Name, prop.Value, dataLength, source) with { Index = entries.Count });
            }
        }
    }

    static void ReadMetadata(JsonElement value, Dictionary<string, string> metadata, string source)
    {
        // The reference implementation treats a null __metadata__ as absent.
        if (value.ValueKind == JsonValueKind.Null)
        {
            return;
        }
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw Bad(source, $"\"{MetadataKey}\" is a JSON {Kind(value)}, not an object of strings");
        }
        foreach (var kv in value.EnumerateObject())
        {
            if (kv.Value.ValueKind != JsonValueKind.String)
            {
                throw Bad(source, $"metadata {Q(kv.Name)} is a JSON {Kind(kv.Value)}, not a string");
            }
            if (!metadata.TryAdd(kv.Name, kv.Value.GetString()!))
            {
                throw Bad(source, $"metadata {Q(kv.Name)} is listed twice");
            }
        }
    }

    static Entry ReadEntry(string name, JsonElement entry, int dataLength, string source)
    {
        string what = $"tensor {Q(name)}";
        if (entry.ValueKind != JsonValueKind.Object)
        {
            throw Bad(source, $"{what} is a JSON {Kind(entry)}, not an object");
        }
        JsonElement? dtypeEl = null, shapeEl = null, offsetsEl = null;
        foreach (var p in entry.EnumerateObject())
        {
            // Unknown fields are ignored (permissive), but a repeated known field is ambiguous.
            switch (p.Name)
            {
                case "dtype": dtypeEl = dtypeEl == null ? p.Value : throw Bad(source, $"{what} lists \"dtype\" twice"); break;
                case "shape": shapeEl = shapeEl == null ? p.Value : throw Bad(source, $"{what} lists \"shape\" twice"); break;
                case "data_offsets": offsetsEl = offsetsEl == null ? p.Value : throw Bad(source, $"{what} lists \"data_offsets\" twice"); break;
                default: break;
            }
        }
        var dtypeV = dtypeEl ?? throw Bad(source, $"{what} has no \"dtype\"");
        var shapeV = shapeEl ?? throw Bad(source, $"{what} has no \"shape\"");
        var offsetsV = offsetsEl ?? throw Bad(source, $"{what} has no \"data_offsets\"");

        if (dtypeV.ValueKind != JsonValueKind.String)
        {
            throw Bad(source, $"{what} has a \"dtype\" that is a JSON {Kind(dtypeV)}, not a string");
        }
        string dtype = dtypeV.GetString()!;
        int elementSize = dtype switch
        {
            "F32" => 4,
            "F64" => 8,
            _ => throw Bad(source, $"{what} has dtype {Q(dtype)}; only F32 and F64 are supported"),
        };

        if (shapeV.ValueKind != JsonValueKind.Array)
        {
            throw Bad(source, $"{what} has a \"shape\" that is a JSON {Kind(shapeV)}, not an array");
        }
        var shape = new int[shapeV.GetArrayLength()];
        long count = 1;
        int k = 0;
        foreach (var dimEl in shapeV.EnumerateArray())
        {
            if (dimEl.ValueKind != JsonValueKind.Number || !dimEl.TryGetInt64(out long dim) || dim < 0)
            {
                throw Bad(source, $"{what} has shape dimension {Raw(dimEl)}; dimensions must be non-negative integers");
            }
            // Shape is int[] and a tensor must fit one float[]; this also rules out overflow of the product.
            if (dim > Array.MaxLength || (dim != 0 && count > Array.MaxLength / dim))
            {
                throw Bad(source, $"{what} has shape {Raw(shapeV)}, too many elements");
            }
            count *= dim;
            shape[k++] = (int)dim;
        }

        if (offsetsV.ValueKind != JsonValueKind.Array || offsetsV.GetArrayLength() != 2)
        {
            throw Bad(source, $"{what} has \"data_offsets\" {Raw(offsetsV)}; expected [begin, end]");
        }
        var offsets = new long[2];
        for (int i = 0; i < 2; i++)
        {
            var o = offsetsV[i];
            if (o.ValueKind != JsonValueKind.Number || !o.TryGetInt64(out offsets[i]) || offsets[i] < 0)
            {
                throw Bad(source, $"{what} has \"data_offsets\" {Raw(offsetsV)}; offsets must be non-negative integers");
            }
        }
        long begin = offsets[0], end = offsets[1];
        if (end < begin)
        {
            throw Bad(source, $"{what} has \"data_offsets\" [{begin}, {end}] with end before begin");
        }
        if (end > dataLength)
        {
            throw Bad(source, $"{what} has \"data_offsets\" [{begin}, {end}] beyond the end of the data ({dataLength} bytes); truncated file?");
        }
        // count <= Array.MaxLength, so this product cannot overflow a long.
        if (end - begin != count * elementSize)
        {
            throw Bad(source, $"{what} has {end - begin} bytes of data but shape {Raw(shapeV)} of {dtype} needs {count * elementSize}");
        }
        return new Entry(name, shape, dtype, begin, end, 0);
    }

    static UserError Bad(string source, string reason) => new(OneLine($"{source}: {reason}"), UserError.BadInput);

    // Names come from the file; quote them, shorten absurd ones, so the message stays one readable line.
    static string Q(string s) => "\"" + (s.Length > 80 ? s[..80] + "..." : s) + "\"";

    static string Raw(JsonElement e)
    {
        string text = e.GetRawText();
        return text.Length > 80 ? text[..80] + "..." : text;
    }

    static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.True or JsonValueKind.False => "boolean",
        JsonValueKind.Undefined => "nothing",
        var k => k.ToString().ToLowerInvariant(),
    };

    static string OneLine(string message)
    {
        var sb = new StringBuilder(message.Length);
        foreach (char c in message)
        {
            _ = c switch
            {
                '\n' => sb.Append("\\n"),
                '\r' => sb.Append("\\r"),
                '\t' => sb.Append("\\t"),
                _ when char.IsControl(c) => sb.Append($"\\u{(int)c:x4}"),
                _ => sb.Append(c),
            };
        }
        return sb.ToString();
    }
}
