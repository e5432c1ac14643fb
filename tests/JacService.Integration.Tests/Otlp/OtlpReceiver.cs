using System.Net;
using Google.Protobuf;
using Grpc.Core;
using JacService.Integration.Tests.Otlp.Proto;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace JacService.Integration.Tests.Otlp;

/// <summary>One span as it arrived, with the resource it was exported under.</summary>
public sealed record ReceivedSpan(Resource Resource, Span Span)
{
    public string? Attribute(string key) => OtlpReceiver.Find(Span.Attributes, key);
    public string? ResourceAttribute(string key) => OtlpReceiver.Find(Resource.Attributes, key);
}

/// <summary>
/// A trace collector on loopback, standing in for an OpenTelemetry Collector: OTLP/gRPC on an HTTP/2-only port
/// and OTLP/HTTP (protobuf) on an HTTP/1.1 port. It decodes every export and keeps the spans.
/// </summary>
public sealed class OtlpReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly List<ReceivedSpan> _spans = [];
    private readonly ListenOptions _grpc, _http;
    private int _exports;

    private OtlpReceiver(WebApplication app, ListenOptions grpc, ListenOptions http)
    {
        _app = app;
        _grpc = grpc;
        _http = http;
    }

    /// <summary>OTEL_EXPORTER_OTLP_ENDPOINT for OTEL_EXPORTER_OTLP_PROTOCOL=grpc.</summary>
    public string GrpcEndpoint => $"http://127.0.0.1:{_grpc.IPEndPoint!.Port}";

    /// <summary>OTEL_EXPORTER_OTLP_ENDPOINT for OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf (the exporter appends /v1/traces).</summary>
    public string HttpEndpoint => $"http://127.0.0.1:{_http.IPEndPoint!.Port}";

    /// <summary>Export calls that carried traces, over either protocol.</summary>
    public int Exports => Volatile.Read(ref _exports);

    public IReadOnlyList<ReceivedSpan> Spans
    {
        get { lock (_spans) return [.. _spans]; }
    }

    public static async Task<OtlpReceiver> StartAsync()
    {
        ListenOptions grpc = null!, http = null!;
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddGrpc();
        // Port 0: Kestrel binds a free port and writes it back into the ListenOptions, so there is no race for it.
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(IPAddress.Loopback, 0, o => { o.Protocols = HttpProtocols.Http2; grpc = o; });
            kestrel.Listen(IPAddress.Loopback, 0, o => { o.Protocols = HttpProtocols.Http1; http = o; });
        });
        OtlpReceiver? receiver = null;
        builder.Services.AddSingleton(_ => receiver!);
        var app = builder.Build();
        receiver = new OtlpReceiver(app, grpc, http);
        app.MapGrpcService<TraceServiceEndpoint>();
        app.MapPost("/v1/traces", receiver.ExportOverHttp);
        // Metrics and logs are exported too once OTLP is on; accepting them (an empty body is an empty
        // Export*ServiceResponse) keeps the exporter from logging failures into the server's output.
        app.MapPost("/v1/{signal}", (HttpContext context) =>
        {
            context.Response.ContentType = "application/x-protobuf";
            return Task.CompletedTask;
        });
        await app.StartAsync();
        return receiver;
    }

    private async Task ExportOverHttp(HttpContext context)
    {
        if (context.Request.ContentType?.StartsWith("application/x-protobuf", StringComparison.Ordinal) != true)
        {
            context.Response.StatusCode = StatusCodes.Status415UnsupportedMediaType;
            return;
        }
        using var body = new MemoryStream();
        await context.Request.Body.CopyToAsync(body);
        Add(ExportTraceServiceRequest.Parser.ParseFrom(body.ToArray()));
        context.Response.ContentType = "application/x-protobuf";
        await context.Response.Body.WriteAsync(new ExportTraceServiceResponse().ToByteArray());
    }

    internal void Add(ExportTraceServiceRequest request)
    {
        Interlocked.Increment(ref _exports);
        lock (_spans)
            foreach (var resourceSpans in request.ResourceSpans)
            foreach (var scopeSpans in resourceSpans.ScopeSpans)
            foreach (var span in scopeSpans.Spans)
                _spans.Add(new ReceivedSpan(resourceSpans.Resource ?? new Resource(), span));
    }

    internal static string? Find(IEnumerable<KeyValue> attributes, string key) =>
        attributes.FirstOrDefault(a => a.Key == key)?.Value is { } v
            ? v.ValueCase switch
            {
                AnyValue.ValueOneofCase.StringValue => v.StringValue,
                AnyValue.ValueOneofCase.IntValue => v.IntValue.ToString(),
                AnyValue.ValueOneofCase.BoolValue => v.BoolValue ? "true" : "false",
                AnyValue.ValueOneofCase.DoubleValue => v.DoubleValue.ToString(System.Globalization.CultureInfo.InvariantCulture),
                _ => v.ToString(),
            }
            : null;

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await _app.StopAsync(timeout.Token);
        await _app.DisposeAsync();
    }

    internal sealed class TraceServiceEndpoint(OtlpReceiver receiver) : TraceService.TraceServiceBase
    {
        public override Task<ExportTraceServiceResponse> Export(ExportTraceServiceRequest request, ServerCallContext context)
        {
            receiver.Add(request);
            return Task.FromResult(new ExportTraceServiceResponse());
        }
    }
}
