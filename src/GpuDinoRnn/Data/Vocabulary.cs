// Symbols ↔ ids. Id 0 is the end-of-name symbol '\n'; the rest are the distinct symbols of the
// data (text elements, so an accented letter is one symbol), sorted ordinally.
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace GpuDinoRnn.Data;

public sealed class Vocabulary
{
    public const string EndOfName = "\n";
    private readonly Dictionary<string, int> _ids;

    public Vocabulary(IReadOnlyList<string> symbols)
    {
        if (symbols.Count == 0 || symbols[0] != EndOfName)
            throw new ArgumentException("the vocabulary must start with the end-of-name symbol '\\n'");
        Symbols = symbols.ToArray();
        _ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < Symbols.Count; i++)
        {
            if (!_ids.TryAdd(Symbols[i], i))
                throw new UserError($"the vocabulary lists the symbol {Describe(Symbols[i])} twice");
        }
    }

    public IReadOnlyList<string> Symbols { get; }

    /// <summary>V, the number of symbols, end-of-name included.</summary>
    public int Size => Symbols.Count;

    public static Vocabulary FromNames(IEnumerable<string> names)
    {
        var set = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var name in names)
            foreach (var s in TextElements(name))
                set.Add(s);
        set.Remove(EndOfName);
        return new Vocabulary([EndOfName, .. set]);
    }

    /// <summary>
    /// The vocabulary as stored in checkpoints: the symbols in index order joined into one string
    /// when that splits back into the same symbols (any ordinary vocabulary), else a JSON array of them.
    /// </summary>
    public string Serialize()
    {
        // Joining can make new text elements ("z" + U+0301 is one; regional indicators pair up),
        // so the joined form is kept only where it reads back as these very symbols.
        string joined = string.Concat(Symbols);
        return TextElements(joined).SequenceEqual(Symbols, StringComparer.Ordinal) ? joined : JsonSerializer.Serialize(Symbols, ArrayOptions);
    }

    /// <summary>Either stored form: the joined form starts with '\n', so one starting with '[' is the JSON array.</summary>
    public static Vocabulary Deserialize(string text)
    {
        var symbols = text.StartsWith('[') ? ParseArray(text) : TextElements(text).ToList();
        if (symbols.Count < 2 || symbols[0] != EndOfName)
            throw new UserError("the stored vocabulary must start with '\\n' and hold at least one more symbol");
        return new Vocabulary(symbols);
    }

    private static readonly JsonSerializerOptions ArrayOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static List<string> ParseArray(string text)
    {
        List<string>? symbols; // JSON null elements come through as null despite the type
        try
        {
            symbols = JsonSerializer.Deserialize<List<string>>(text);
        }
        catch (JsonException)
        {
            symbols = null;
        }
        if (symbols is null || symbols.Any(string.IsNullOrEmpty))
            throw new UserError("the stored vocabulary starts with '[' but is not a JSON array of non-empty strings");
        return symbols;
    }

    public bool TryGetId(string symbol, out int id) => _ids.TryGetValue(symbol, out id);

    public int[] Encode(string name)
    {
        var ids = new List<int>(name.Length);
        foreach (var s in TextElements(name))
        {
            if (!_ids.TryGetValue(s, out int id))
                throw new UserError($"the symbol {Describe(s)} in \"{name}\" is not in the model's vocabulary");
            ids.Add(id);
        }
        return ids.ToArray();
    }

    /// <summary>
    /// A whole text (continuous mode), '\n' included: an unknown symbol is named by its line and
    /// column (in symbols), not by the text around it, which may be the whole file.
    /// </summary>
    public int[] EncodeText(string text)
    {
        var ids = new List<int>(text.Length);
        int line = 1, column = 1;
        foreach (var s in TextElements(text))
        {
            if (!_ids.TryGetValue(s, out int id))
                throw new UserError($"the symbol {Describe(s)} at line {line}, column {column} is not in the model's vocabulary");
            ids.Add(id);
            (line, column) = s == EndOfName ? (line + 1, 1) : (line, column + 1);
        }
        return ids.ToArray();
    }

    public string Decode(IEnumerable<int> ids) => string.Concat(ids.Select(i => Symbols[i]));

    public bool SameAs(Vocabulary other) => Symbols.SequenceEqual(other.Symbols, StringComparer.Ordinal);

    /// <summary>A short printable form for messages: the stored form with '\n' shown as \n (a JSON array where joining is ambiguous).</summary>
    public string Display()
    {
        var text = Serialize().Replace("\n", "\\n", StringComparison.Ordinal);
        return text.Length <= 80 ? $"\"{text}\"" : $"\"{text[..77]}...\"";
    }

    public static IEnumerable<string> TextElements(string text)
    {
        var e = StringInfo.GetTextElementEnumerator(text);
        while (e.MoveNext())
            yield return (string)e.Current;
    }

    private static string Describe(string s)
    {
        if (s == EndOfName)
            return "'\\n'";
        string codes = string.Join(" ", s.EnumerateRunes().Select(r => $"U+{r.Value:X4}"));
        // A control character or a line or paragraph separator would break the message's line.
        bool printable = !s.EnumerateRunes().Any(r => System.Text.Rune.IsControl(r) || System.Text.Rune.GetUnicodeCategory(r) is
            UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator);
        return printable ? $"'{s}' ({codes})" : codes;
    }
}
