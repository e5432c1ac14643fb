using JacService.Server.Extensions;
using Microsoft.Extensions.Options;

namespace JacService.Server.Control;

public static class ModelControlExtensions
{
    /// <summary>
    /// The ModelControl service and its token check, only with ModelControl:Enabled: a server that never enabled it has
    /// no way in to change what it serves, not even one guarded by a token.
    /// </summary>
    public static WebApplicationBuilder AddModelControl(this WebApplicationBuilder builder)
    {
        // Whether the service exists decides what is registered and mapped: read and validated now, once.
        var options = builder.AddOptionsNeededToRegister<ModelControlOptions>(ModelControlOptions.Section);
        if (!options.Enabled) return builder;
        builder.Services.AddSingleton<RepositoryListing>();
        // One instance: the token's hash is computed once, not per call.
        builder.Services.AddSingleton<BearerTokenInterceptor>();
        builder.Services.AddGrpc().AddServiceOptions<ModelControlGrpcService>(o => o.Interceptors.Add<BearerTokenInterceptor>());
        return builder;
    }

    /// <summary>Maps ModelControl when enabled; otherwise its calls get UNIMPLEMENTED and reflection does not list it.</summary>
    public static WebApplication MapModelControl(this WebApplication app)
    {
        if (app.Services.GetRequiredService<IOptions<ModelControlOptions>>().Value.Enabled) app.MapGrpcService<ModelControlGrpcService>();
        return app;
    }
}
