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
        var shown = text.Length > MaxQuoted ? text.AsSpan(0, MaxQuoted) : text.AsSpan();
        var quoted = new StringBuilder(shown.Length + 32).Append('\'');
        foreach (char c in shown)
        {
            if (char.IsControl(c)) quoted.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
            else quoted.Append(c);
        }
        if (text.Length > MaxQuoted)
            return quoted.Append(CultureInfo.InvariantCulture, $"…' ({text.Length:N0} characters)").ToString();
        return quoted.Append('\'').ToString();
    }
}
