using System.Net;
using System.Reflection;
using JacService.Core.Models;
using JacService.Server.Admission;
using JacService.Server.Auth;
using JacService.Server.Batching;
using JacService.Server.Control;
using JacService.Server.Execution;
using JacService.Server.Grpc;
using JacService.Server.Health;
using JacService.Server.Inference;
using JacService.Server.Models;
using JacService.Server.Quotas;
using JacService.Server.Telemetry;
using JacService.Server.Tls;
using Grpc.AspNetCore.Server;
using Grpc.AspNetCore.Server.Model;
using Grpc.HealthCheck;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace JacService.Server.Extensions;

/// <summary>All of the server's wiring, so Program.cs stays a few lines.</summary>
public static class JacServiceExtensions
{
    public static WebApplicationBuilder AddJacService(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddValidatedOptions<ModelRepositoryOptions>(ModelRepositoryOptions.Section);
        services.AddValidatedOptions<EngineOptions>(EngineOptions.Section);
        services.AddValidatedOptions<LimitsOptions>(LimitsOptions.Section);
        services.AddValidatedOptions<BatchingOptions>(BatchingOptions.Section);
        services.AddValidatedOptions<CallerErrorsOptions>(CallerErrorsOptions.Section);
        services.AddSingleton(TimeProvider.System);

        services.AddSingleton(sp => sp.GetRequiredService<IOptions<LimitsOptions>>().Value
            .ToEngineLimits(sp.GetRequiredService<IOptions<EngineOptions>>().Value));
        services.AddSingleton<CallerErrorLog>();
        // A singleton, so JacobianStream answers each message with the status the interceptor would give a call.
        services.AddSingleton<ErrorMappingInterceptor>();
        services.AddSingleton<JacobianStreams>();
        services.AddSingleton<ModelRegistry>();
        services.AddSingleton<RepositoryScanner>();
        services.AddSingleton<VersionLoader>();
        services.AddSingleton<HealthServiceImpl>();
        services.AddHostedService<NativeHeapSetup>();
        services.AddHostedService<OnnxRuntimeLogSetup>();
        services.AddHostedService<MklDispatchSetup>();
        services.AddHostedService<ComputeDeviceSetup>();
        services.AddHostedService<ModelHealthPublisher>();
        services.AddHostedService<IdleMemoryReturn>();
        // One instance, both hosted and handed to ModelControl.
        services.AddSingleton<ModelRepositoryLoader>();
        services.AddHostedService(sp => sp.GetRequiredService<ModelRepositoryLoader>());
        builder.AddJacServiceTelemetry();
        builder.AddModelControl();
        builder.AddJacServiceAuth();
        builder.AddJacServiceQuotas();
        builder.AddJacServiceAdmission();
        builder.AddJacServiceTls();
        builder.AddOpenInference();
        builder.ConfigureEndpoints();
        services.AddOptions<HostOptions>().Configure<IOptions<BatchingOptions>>((host, batching) =>
            host.ShutdownTimeout = batching.Value.DrainTimeout + TimeSpan.FromSeconds(5));

        services.AddGrpc(o =>
        {
            // Outermost first: metrics see the status the error interceptor settled on.
            o.Interceptors.Add<RequestTelemetryInterceptor>();
            o.Interceptors.Add<ErrorMappingInterceptor>();
            o.MaxSendMessageSize = null;
            o.EnableDetailedErrors = false;
        });
        services.AddOptions<GrpcServiceOptions>().Configure<IOptions<LimitsOptions>>((grpc, limits) =>
            grpc.MaxReceiveMessageSize = limits.Value.MaxRequestMiB << 20);
        // Kestrel reads its section's Endpoints, Certificates and EndpointDefaults, not its Limits, which ASP.NET Core leaves
        // to code; a server shipped as a binary and an image is set through configuration. Bound here: connections, HTTP/2
        // streams per connection, keep-alive (docs/security.md). The body size is Limits:MaxRequestMiB's, below.
        services.Configure<KestrelServerOptions>(kestrel => BindKestrelLimits(builder.Configuration.GetSection("Kestrel:Limits"), kestrel.Limits));
        // Kestrel's own cap on a request body (30,000,000 bytes unless set), which grpc-dotnet keeps for unary calls, sat
        // below MaxRequestMiB: a 40 MB Predict ended UNKNOWN with a stack trace logged. One message and its 5-byte gRPC
        // prefix pass it now, so gRPC's check of the message length (RESOURCE_EXHAUSTED) is the one a caller meets.
        services.AddOptions<KestrelServerOptions>().Configure<IOptions<LimitsOptions>>((kestrel, limits) =>
            kestrel.Limits.MaxRequestBodySize = ((long)limits.Value.MaxRequestMiB << 20) + 5);
        services.AddGrpcReflection();
        services.ParseRequestsStrictly();
        return builder;
    }

    /// <summary>A value Kestrel refuses stops the start naming the setting; the binder's own exception names only the setter.</summary>
    private static void BindKestrelLimits(IConfigurationSection section, KestrelServerLimits limits)
    {
        try
        {
            section.Bind(limits);
        }
        catch (Exception e) when (e is TargetInvocationException or InvalidOperationException)
        {
            var cause = e.InnerException ?? e;
            string owner = cause.TargetSite?.DeclaringType == typeof(Http2Limits) ? ":Http2" : "";
            string setting = cause.TargetSite?.Name is { } setter && setter.StartsWith("set_", StringComparison.Ordinal) ? $"{owner}:{setter[4..]}" : "";
            throw new InvalidOperationException($"{section.Path}{setting} is refused: {cause.Message}", e);
        }
    }

    /// <summary>
    /// Binds every gRPC service through <see cref="ParsingServiceMethodProvider{TService}"/> in place of grpc-dotnet's
    /// binder (both would register each method, and a route twice is ambiguous), so a request message that does not
    /// parse is INVALID_ARGUMENT, logged once per interval, not UNKNOWN with a stack trace per call.
    /// </summary>
    private static void ParseRequestsStrictly(this IServiceCollection services)
    {
        var binder = services.SingleOrDefault(d => d.ServiceType == typeof(IServiceMethodProvider<>) && d.ImplementationType?.Name == "BinderServiceMethodProvider`1")
            ?? throw new InvalidOperationException("grpc-dotnet's BinderServiceMethodProvider is not registered: AddGrpc must come first (or a new grpc-dotnet binds differently)");
        services.Remove(binder);
        services.TryAddEnumerable(ServiceDescriptor.Singleton(typeof(IServiceMethodProvider<>), typeof(ParsingServiceMethodProvider<>)));
    }

    /// <summary>
    /// gRPC without TLS (h2c) needs HTTP/2-only endpoints and Prometheus scrapes over HTTP/1.1; Kestrel cannot
    /// serve both on one cleartext port, so each endpoint gets its protocol by port: the gRPC ones from "urls"
    /// (--urls, the variable Urls, or appsettings), the metrics one from Telemetry:MetricsUrl, and the Open Inference
    /// Protocol's REST one from OpenInference:RestUrl (HTTP/1.1, and HTTP/2 where TLS lets a client choose). TLS on the gRPC
    /// port is Kestrel's standard configuration (Kestrel:Endpoints); Kestrel then ignores "urls", so the metrics endpoint
    /// and a plain REST one are added in code, which Kestrel binds beside the configured ones.
    /// </summary>
    private static void ConfigureEndpoints(this WebApplicationBuilder builder)
    {
        // Read once: an endpoint added to a running server's configuration does not move the metrics endpoint.
        var configured = KestrelEndpointSettings.Configured(builder.Configuration);
        builder.Services.AddOptions<KestrelServerOptions>().Configure<IOptions<TelemetryOptions>, IOptions<OpenInferenceOptions>>((kestrel, telemetry, oip) =>
        {
            int? metricsPort = telemetry.Value.ServesMetrics ? telemetry.Value.MetricsPort() : null;
            int? restPort = oip.Value.RestPort();
            // HTTP/2 beside HTTP/1.1 only where TLS lets a client choose (Kestrel warns of it on a plain endpoint).
            var rest = oip.Value.RestUrl.StartsWith("https:", StringComparison.OrdinalIgnoreCase) ? HttpProtocols.Http1AndHttp2 : HttpProtocols.Http1;
            kestrel.ConfigureEndpointDefaults(endpoint => endpoint.Protocols =
                endpoint.IPEndPoint?.Port == metricsPort ? HttpProtocols.Http1
                : endpoint.IPEndPoint?.Port == restPort ? rest
                : HttpProtocols.Http2);
            if (configured.Count == 0) return;
            if (metricsPort is not null) ListenHttp1(kestrel, BindingAddress.Parse(telemetry.Value.MetricsUrl));
            if (restPort is not null && !configured.Any(e => PortOf(e.Url) == restPort)) ListenHttp1(kestrel, BindingAddress.Parse(oip.Value.RestUrl));
        });
    }

    private static int? PortOf(string url) => url.Length > 0 ? BindingAddress.Parse(url).Port : null;

    /// <summary>A plain HTTP/1.1 address as Kestrel would bind it from "urls": localhost, an IP address, or any other host meaning every interface.</summary>
    private static void ListenHttp1(KestrelServerOptions kestrel, BindingAddress address)
    {
        static void Http1(ListenOptions endpoint) => endpoint.Protocols = HttpProtocols.Http1;
        if (string.Equals(address.Host, "localhost", StringComparison.OrdinalIgnoreCase))
            kestrel.ListenLocalhost(address.Port, Http1);
        else if (IPAddress.TryParse(address.Host.Trim('[', ']'), out var ip))
            kestrel.Listen(ip, address.Port, Http1);
        else
            kestrel.ListenAnyIP(address.Port, Http1);
    }

    /// <summary>
    /// The addresses to listen on: every gRPC url, then the metrics and REST urls. With Kestrel:Endpoints configured, those
    /// are the gRPC addresses (and the REST one where an endpoint has its port) and the others are bound in code
    /// (<see cref="ConfigureEndpoints"/>). One port cannot speak both HTTP/2 alone and HTTP/1.1: a shared port is refused.
    /// </summary>
    private static void ListenOnConfiguredUrls(this WebApplication app)
    {
        var configured = KestrelEndpointSettings.Configured(app.Configuration);
        var oip = app.Services.GetRequiredService<IOptions<OpenInferenceOptions>>().Value;
        int? restPort = oip.RestPort();
        string[] grpcUrls;
        if (configured.Count > 0)
        {
            grpcUrls = configured.Select(e => e.Url).Where(u => u.Length > 0 && PortOf(u) != restPort).ToArray();
        }
        else
        {
            var urls = app.Configuration[WebHostDefaults.ServerUrlsKey];
            if (string.IsNullOrWhiteSpace(urls)) urls = "http://127.0.0.1:50051";
            grpcUrls = urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            foreach (var url in grpcUrls) app.Urls.Add(url);
        }
        var telemetry = app.Services.GetRequiredService<IOptions<TelemetryOptions>>().Value;
        int? metricsPort = telemetry.ServesMetrics ? telemetry.MetricsPort() : null;
        if (metricsPort is not null && grpcUrls.FirstOrDefault(u => PortOf(u) == metricsPort) is { } clash)
            throw new InvalidOperationException(
                $"Telemetry:MetricsUrl '{telemetry.MetricsUrl}' uses the port of the gRPC address '{clash}'; give metrics a port of their own or set it empty");
        if (restPort is not null)
        {
            if (grpcUrls.FirstOrDefault(u => PortOf(u) == restPort) is { } grpcClash)
                throw new InvalidOperationException(
                    $"OpenInference:RestUrl '{oip.RestUrl}' uses the port of the gRPC address '{grpcClash}'; give the REST binding a port of its own");
            if (restPort == metricsPort)
                throw new InvalidOperationException($"OpenInference:RestUrl '{oip.RestUrl}' uses the metrics port; give the REST binding a port of its own");
            bool https = oip.RestUrl.StartsWith("https:", StringComparison.OrdinalIgnoreCase);
            if (https && !configured.Any(e => PortOf(e.Url) == restPort))
                throw new InvalidOperationException(
                    $"OpenInference:RestUrl '{oip.RestUrl}' is https: it names the port of a Kestrel:Endpoints entry, which carries the certificate, and none has port {restPort}");
        }
        if (configured.Count > 0) return;
        if (metricsPort is not null) app.Urls.Add(telemetry.MetricsUrl);
        if (restPort is not null) app.Urls.Add(oip.RestUrl);
    }

    public static WebApplication MapJacService(this WebApplication app)
    {
        app.ListenOnConfiguredUrls();
        app.MapJacServiceMetrics();
        app.UseOpenInferenceRestPort();
        app.UseJacServiceAuth();
        app.UseJacServiceQuotas();
        app.UseJacServiceAdmission();
        app.MapGrpcService<JacobianGrpcService>();
        app.MapGrpcService<InferenceGrpcService>();
        app.MapOpenInferenceRest();
        app.MapGrpcService<HealthServiceImpl>();
        app.MapModelControl();
        app.MapGrpcReflectionService();
        return app;
    }

    private static void AddValidatedOptions<T>(this IServiceCollection services, string section) where T : class =>
        services.AddOptions<T>().BindConfiguration(section).ValidateDataAnnotations().ValidateOnStart();

    /// <summary>
    /// For a section whose values decide which services get registered, so they are needed before the container
    /// exists: bound and validated once, here, and that same instance is what <see cref="IOptions{T}"/> hands out.
    /// </summary>
    internal static T AddOptionsNeededToRegister<T>(this WebApplicationBuilder builder, string section) where T : class, new()
    {
        var value = builder.Configuration.GetSection(section).Get<T>() ?? new T();
        var result = new DataAnnotationValidateOptions<T>(Options.DefaultName).Validate(Options.DefaultName, value);
        if (result.Failed) throw new OptionsValidationException(Options.DefaultName, typeof(T), result.Failures);
        builder.Services.AddSingleton(Options.Create(value));
        return value;
    }
}
