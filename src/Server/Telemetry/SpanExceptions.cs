using System.Diagnostics;

namespace JacService.Server.Telemetry;

/// <summary>How the server puts an exception on a span.</summary>
public static class SpanExceptions
{
    /// <summary>
    /// Adds the exception event, on a recorded span only. The event formats the whole stack trace, and ASP.NET Core
    /// starts an activity per request for its logs even when no exporter records it: always adding the event took a
    /// third of the server's CPU for rejected requests (docs/benchmarks.md, "Requests that fail validation").
    /// </summary>
    public static void RecordException(this Activity? span, Exception e)
    {
        if (span is { Recorded: true }) span.AddException(e);
    }
}
