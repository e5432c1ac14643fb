using System.ComponentModel.DataAnnotations;
using JacService.Server.Extensions;

namespace JacService.Server.Telemetry;

/// <summary>
/// Traces, metrics and their exporters (configuration section "Telemetry"). Where the data goes is set by the
/// standard OpenTelemetry variables: OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set (OTEL_EXPORTER_OTLP_PROTOCOL
/// picks grpc or http/protobuf), the console in the Development environment, and Prometheus scraping here.
/// </summary>
public sealed record TelemetryOptions : IValidatableObject
{
    public const string Section = "Telemetry";

    /// <summary>Off: no traces, no metrics, no exporters (for overhead comparisons).</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>
    /// Record spans (with Enabled): true always, false never. Unset, only where they have somewhere to go: an OTLP
    /// endpoint, or the console in Development. Spans recorded for no exporter cost a single-sample call 5-30 % of its
    /// server CPU (docs/benchmarks.md, "Spans only where they go"); true is for exporters added in code.
    /// </summary>
    public bool? Traces { get; set; }

    /// <summary>Record metrics and serve them (with Enabled).</summary>
    public bool Metrics { get; set; } = true;

    /// <summary>
    /// Plain HTTP/1.1 address serving Prometheus metrics at /metrics, apart from the gRPC port (which speaks
    /// HTTP/2 only). Empty turns the endpoint off; http://0.0.0.0:PORT listens on every interface.
    /// </summary>
    public string MetricsUrl { get; set; } = "http://127.0.0.1:9464";

    /// <summary>Share of new traces recorded; a caller's sampling decision (traceparent) is always followed.</summary>
    [Range(0.0, 1.0)]
    public double TraceSampleRatio { get; set; } = 1.0;

    public bool ServesMetrics => Enabled && Metrics && !string.IsNullOrWhiteSpace(MetricsUrl);

    /// <summary>The metrics port, or null while <see cref="MetricsUrl"/> does not parse (validation reports it).</summary>
    public int? MetricsPort() => HttpAddress.Parse(MetricsUrl, out _)?.Port;

    public IEnumerable<ValidationResult> Validate(ValidationContext context)
    {
        if (!ServesMetrics) yield break;
        var address = HttpAddress.Parse(MetricsUrl, out var problem);
        if (address?.Scheme == "https") problem = "the scheme must be http";
        if (problem is not null)
            yield return new ValidationResult($"Telemetry:MetricsUrl must be http://HOST:PORT or empty ({problem}); got '{MetricsUrl}'", [nameof(MetricsUrl)]);
    }
}
