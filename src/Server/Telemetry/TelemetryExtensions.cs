using System.Diagnostics.Metrics;
using JacService.Server.Extensions;
using JacService.Server.Models;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Logs;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace JacService.Server.Telemetry;

public static class TelemetryExtensions
{
    /// <summary>
    /// Traces (the ASP.NET Core server span of every RPC, with the gRPC semantic conventions, plus the
    /// "JacService" queue and batch spans), metrics (the "JacService" meter, ASP.NET Core, Kestrel and the
    /// runtime) and log correlation, exported as <see cref="TelemetryOptions"/> describes.
    /// </summary>
    public static WebApplicationBuilder AddJacServiceTelemetry(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        // Whether anything is recorded decides what is registered: read now, once.
        var options = builder.AddOptionsNeededToRegister<TelemetryOptions>(TelemetryOptions.Section);
        services.AddSingleton(sp =>
        {
            var metrics = new JacServiceMetrics(sp.GetRequiredService<IMeterFactory>().Create(JacServiceTelemetry.Name));
            metrics.ObserveRegistry(sp.GetRequiredService<ModelRegistry>());
            return metrics;
        });

        if (!options.Enabled) return builder;

        // Log records carry the trace and span id of the request they were written in.
        builder.Logging.Configure(o => o.ActivityTrackingOptions =
            ActivityTrackingOptions.TraceId | ActivityTrackingOptions.SpanId | ActivityTrackingOptions.ParentId);
        // RPC semantic conventions on the server span are still behind this flag in the instrumentation.
        builder.Configuration.AddInMemoryCollection([new("OTEL_DOTNET_EXPERIMENTAL_ASPNETCORE_ENABLE_GRPC_INSTRUMENTATION", "true")]);

        var otlp = !string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        var console = builder.Environment.IsDevelopment();
        var serviceName = builder.Configuration["OTEL_SERVICE_NAME"] is { Length: > 0 } name ? name : "jacservice";

        var otel = services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(serviceName, serviceVersion: typeof(TelemetryExtensions).Assembly.GetName().Version?.ToString()));
        // The standard OTEL_TRACES_SAMPLER (and _ARG), when set, is left to the SDK and wins over TraceSampleRatio.
        var standardSampler = !string.IsNullOrWhiteSpace(builder.Configuration["OTEL_TRACES_SAMPLER"]);
        if (options.Traces ?? (otlp || console))
            otel.WithTracing(tracing =>
            {
                if (!standardSampler) tracing.SetSampler(new ParentBasedSampler(new TraceIdRatioBasedSampler(options.TraceSampleRatio)));
                tracing
                    .AddSource(JacServiceTelemetry.Name)
                    .AddAspNetCoreInstrumentation(o =>
                    {
                        // Who called, under mutual TLS: the certificate Kestrel validated (semantic conventions' tls.client.*).
                        o.EnrichWithHttpRequest = (activity, request) =>
                        {
                            if (request.HttpContext.Connection.ClientCertificate is { } certificate)
                                activity.SetTag("tls.client.subject", certificate.Subject);
                        };
                        o.EnrichWithHttpResponse = (activity, _) => GrpcSpanAttributes.AddEarlierConventions(activity);
                        // The health and reflection services are polled constantly; their spans would drown the rest.
                        o.Filter = context => !context.Request.Path.StartsWithSegments("/grpc.health.v1.Health")
                            && !context.Request.Path.StartsWithSegments("/grpc.reflection.v1alpha.ServerReflection")
                            && !context.Request.Path.StartsWithSegments("/grpc.reflection.v1.ServerReflection");
                    });
                if (console) tracing.AddConsoleExporter();
            });
        if (options.Metrics)
            otel.WithMetrics(metrics =>
            {
                metrics
                    .AddMeter(JacServiceTelemetry.Name)
                    .AddAspNetCoreInstrumentation()
                    .AddMeter("System.Runtime");
                if (options.ServesMetrics) metrics.AddPrometheusExporter();
            });
        if (otlp) otel.UseOtlpExporter();
        return builder;
    }

    /// <summary>Serves /metrics on the metrics endpoint only (see <see cref="TelemetryOptions.MetricsUrl"/>).</summary>
    public static WebApplication MapJacServiceMetrics(this WebApplication app)
    {
        var options = app.Services.GetRequiredService<IOptions<TelemetryOptions>>().Value;
        if (!options.ServesMetrics) return app;
        // Matched by the port the connection arrived on, not by the Host header: behind a published container port
        // or a Kubernetes Service the caller's Host names another port.
        int? port = options.MetricsPort();
        app.UseOpenTelemetryPrometheusScrapingEndpoint(context =>
            context.Connection.LocalPort == port && context.Request.Path == "/metrics");
        return app;
    }
}
