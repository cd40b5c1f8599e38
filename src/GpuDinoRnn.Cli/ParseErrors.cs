// CommandLineParser's parse errors as the one line every other mistake gets: its own sentences,
// except that a value it could not read is named with what the option takes (it says only
// "defined with a bad format"), and where to look for the options.
using System.Globalization;
using System.Reflection;
using CommandLine;
using CommandLine.Text;

namespace GpuDinoRnn.Cli;

internal static class ParseErrors
{
    /// <summary>
    /// The culture options are read in: the invariant one without a thousands separator, so that
    /// a decimal comma ("0,5") is an error rather than read as 5.
    /// </summary>
    public static readonly CultureInfo Culture = NoThousandsSeparator();

    public static string OneLine(NotParsed<object> notParsed, string[] args)
    {
        var sentences = SentenceBuilder.Create();
        var verb = notParsed.TypeInfo.Current; // the verb's options, or the parser's NullInstance when no verb matched
        var parts = notParsed.Errors
            .Select(e => e is BadFormatConversionError bad ? BadValue(bad.NameInfo, verb, args) : sentences.FormatError(e).TrimEnd('.'))
            .Distinct();
        return $"{string.Join("; ", parts)} ({HelpHint(verb)})";
    }

    /// <summary>
    /// Fails on an option given without its value (`train --hidden`, or `--data --hidden 8`): the
    /// parser leaves a nullable option unset then, and the run would go on with the default.
    /// </summary>
    public static void RefuseMissingValues(string[] args, Type verb)
    {
        var valued = verb.GetProperties()
            .Where(p => p.PropertyType != typeof(bool))
            .Select(p => p.GetCustomAttribute<OptionAttribute>()?.LongName)
            .OfType<string>();
        foreach (string name in valued)
        {
            int i = Array.FindIndex(args, a => a.Equals("--" + name, StringComparison.OrdinalIgnoreCase));
            if (i >= 0 && (i + 1 == args.Length || args[i + 1].StartsWith("--", StringComparison.Ordinal)))
                throw new UserError($"--{name} needs a value ({HelpHint(verb)})");
        }
    }

    /// <summary>Where to look: the verb's options, or the commands when no verb matched.</summary>
    private static string HelpHint(Type verb) => verb.GetCustomAttribute<VerbAttribute>() is { } v
        ? $"gpudinornn {v.Name} --help lists its options"
        : "gpudinornn help lists the commands";

    private static string BadValue(NameInfo name, Type verb, string[] args)
    {
        var property = verb.GetProperties().FirstOrDefault(p => p.GetCustomAttribute<OptionAttribute>()?.LongName == name.LongName);
        var type = property is null ? null : Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
        string takes = type switch
        {
            { IsEnum: true } => "one of " + string.Join(", ", Enum.GetNames(type).Select(n => n.ToLowerInvariant())),
            _ when type == typeof(int) => $"a whole number (at most {int.MaxValue})",
            _ when type == typeof(float) || type == typeof(double) => "a number written with a dot, such as 0.5",
            _ when type == typeof(IEnumerable<int>) => "a whole number or a comma list of them, such as 1,2",
            _ => "a value it takes",
        };
        return ValueOf(name.LongName, args) is { } value
            ? $"--{name.LongName} '{value}' is not {takes}"
            : $"--{name.LongName} takes {takes}";
    }

    /// <summary>The value after --name, or of --name=value (names are read case-insensitively).</summary>
    private static string? ValueOf(string name, string[] args)
    {
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i].Equals("--" + name, StringComparison.OrdinalIgnoreCase))
                return i + 1 < args.Length ? args[i + 1] : null;
            if (args[i].StartsWith("--" + name + "=", StringComparison.OrdinalIgnoreCase))
                return args[i][(name.Length + 3)..];
        }
        return null;
    }

    private static CultureInfo NoThousandsSeparator()
    {
        var culture = (CultureInfo)CultureInfo.InvariantCulture.Clone();
        // A separator nobody types: the parser's number styles allow thousands separators.
        culture.NumberFormat.NumberGroupSeparator = "\u2063";
        return CultureInfo.ReadOnly(culture);
    }
}
