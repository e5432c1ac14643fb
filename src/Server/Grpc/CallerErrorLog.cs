using System.Collections.Concurrent;
using Microsoft.Extensions.Options;

namespace JacService.Server.Grpc;

/// <summary>
/// Calls that failed through the caller's doing or the server's load (a message that does not parse, a bad request, an
/// unknown model, a full queue): at most one line per kind per CallerErrors:LogIntervalSeconds, at CallerErrors:LogLevel,
/// each saying how many of its kind went unlogged since the line before. A client sending thousands of bad calls a
/// second writes a line per interval, not one (nor a stack trace) per call; the caller has the reason in its status.
/// </summary>
public sealed partial class CallerErrorLog(IOptions<CallerErrorsOptions> options, TimeProvider clock, ILogger<CallerErrorLog> logger)
{
    /// <summary>The kind of a request message that does not parse (the other kinds are status codes).</summary>
    public const string MalformedMessage = "MalformedMessage";

    // Details echo what the caller sent (a model name, a shape), which can be as long as a request: a line stays short.
    private const int MaxDetailLength = 300;

    private readonly LogLevel _level = options.Value.LogLevel;
    private readonly TimeSpan _interval = TimeSpan.FromSeconds(options.Value.LogIntervalSeconds);
    // Kinds are a fixed set (status codes, and the malformed message), so this stays small.
    private readonly ConcurrentDictionary<string, Window> _kinds = new();

    /// <param name="kind">The status code's name, or <see cref="MalformedMessage"/>.</param>
    public void Report(string kind, string method, string detail)
    {
        if (!logger.IsEnabled(_level)) return;
        var window = _kinds.GetOrAdd(kind, _ => new Window());
        long unlogged;
        lock (window)
        {
            var now = clock.GetUtcNow();
            if (now < window.NextLine)
            {
                window.Unlogged++;
                return;
            }
            unlogged = window.Unlogged;
            window.Unlogged = 0;
            window.NextLine = now + _interval;
        }
        if (detail.Length > MaxDetailLength) detail = detail[..MaxDetailLength] + "…";
        // A detail can echo a name the caller chose; a line break in it would forge a log line.
        detail = Core.CallerText.Printable(detail);
        LogCallerError(_level, kind, method, detail, unlogged, _interval.TotalSeconds);
    }

    private sealed class Window
    {
        public DateTimeOffset NextLine = DateTimeOffset.MinValue;
        public long Unlogged;
    }

    [LoggerMessage(Message = "Caller error {Kind} in {Method}: {Detail} ({Unlogged} more of this kind since the last line; at most one line per {IntervalSeconds} s)")]
    private partial void LogCallerError(LogLevel level, string kind, string method, string detail, long unlogged, double intervalSeconds);
}
