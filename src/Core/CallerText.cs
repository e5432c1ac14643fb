using System.Globalization;
using System.Text;

namespace JacService.Core;

/// <summary>
/// Text a caller sent (a model name, a version), quoted for a status message or a log line. Control characters are
/// escaped, so a name cannot break a log line in two, and a long one is cut: a name of ten thousand characters would
/// otherwise crowd out the rest of the message, and push the status past what clients take in a header (8 KiB in
/// gRPC's C core).
/// </summary>
public static class CallerText
{
    public const int MaxQuoted = 100;

    /// <summary>The text as it came, cut to <see cref="MaxQuoted"/> characters (for a span attribute).</summary>
    public static string Clip(string text) => text.Length <= MaxQuoted ? text : text[..MaxQuoted];

    public static string Quote(string text)
    {
        var quoted = new StringBuilder(Math.Min(text.Length, MaxQuoted) + 32).Append('\'');
        AppendPrintable(quoted, text.Length > MaxQuoted ? text.AsSpan(0, MaxQuoted) : text.AsSpan());
        if (text.Length > MaxQuoted)
            return quoted.Append(CultureInfo.InvariantCulture, $"…' ({text.Length:N0} characters)").ToString();
        return quoted.Append('\'').ToString();
    }

    /// <summary>The text with control characters escaped (a line break as \u000a), for a log line.</summary>
    public static string Printable(string text)
    {
        if (!text.Any(char.IsControl)) return text;
        var printable = new StringBuilder(text.Length + 16);
        AppendPrintable(printable, text);
        return printable.ToString();
    }

    private static void AppendPrintable(StringBuilder to, ReadOnlySpan<char> text)
    {
        foreach (char c in text)
        {
            if (char.IsControl(c)) to.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
            else to.Append(c);
        }
    }
}
