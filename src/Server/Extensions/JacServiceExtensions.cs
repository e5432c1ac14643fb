using JacService.Core.Models;
using JacService.Server.Batching;
using JacService.Server.Execution;
using JacService.Server.Grpc;
using JacService.Server.Models;
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
        services.AddSingleton(TimeProvider.System);

        services.AddSingleton(sp => sp.GetRequiredService<IOptions<LimitsOptions>>().Value
            .ToEngineLimits(sp.GetRequiredService<IOptions<EngineOptions>>().Value));
        services.AddSingleton<ModelRegistry>();
        services.AddHostedService<ModelRepositoryLoader>();
        var drain = builder.Configuration.GetSection(BatchingOptions.Section).Get<BatchingOptions>()?.DrainTimeout ?? TimeSpan.FromSeconds(10);
        services.Configure<HostOptions>(o => o.ShutdownTimeout = drain + TimeSpan.FromSeconds(5));

        var limits = builder.Configuration.GetSection(LimitsOptions.Section).Get<LimitsOptions>() ?? new LimitsOptions();
        services.AddGrpc(o =>
        {
            o.Interceptors.Add<ErrorMappingInterceptor>();
            o.MaxReceiveMessageSize = limits.MaxRequestMiB << 20;
            o.MaxSendMessageSize = null;
            o.EnableDetailedErrors = false;
        });
        services.AddGrpcReflection();
        services.AddGrpcHealthChecks().AddCheck<RepositoryHealthCheck>("repository");
        return builder;
    }

    public static WebApplication MapJacService(this WebApplication app)
    {
        app.MapGrpcService<JacobianGrpcService>();
        app.MapGrpcHealthChecksService();
        app.MapGrpcReflectionService();
        return app;
    }

    private static void AddValidatedOptions<T>(this IServiceCollection services, string section) where T : class =>
        services.AddOptions<T>().BindConfiguration(section).ValidateDataAnnotations().ValidateOnStart();
}
