using JacService.Server.Extensions;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;

namespace JacService.Server.Inference;

/// <summary>The Open Inference Protocol: its calls, its gRPC service (mapped with the others) and its HTTP/REST routes on their own port.</summary>
public static class OpenInferenceExtensions
{
    private const string Service = "/inference.GRPCInferenceService/";

    public static WebApplicationBuilder AddOpenInference(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<OpenInferenceOptions>().BindConfiguration(OpenInferenceOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<OpenInferenceCalls>();
        builder.Services.AddSingleton<OpenInferenceRest>();
        return builder;
    }

    /// <summary>
    /// Before authentication: the REST routes answer on the REST port only, and it serves nothing else (a path elsewhere is
    /// 404 there, whoever asks). Matched by the port the connection arrived on, as the metrics endpoint is, not by the Host header.
    /// </summary>
    public static WebApplication UseOpenInferenceRestPort(this WebApplication app)
    {
        if (app.Services.GetRequiredService<IOptions<OpenInferenceOptions>>().Value.RestPort() is not { } port) return app;
        app.Use((context, next) =>
        {
            if ((OpenInferenceRoute.Of(context) is not null) == (context.Connection.LocalPort == port)) return next(context);
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            return Task.CompletedTask;
        });
        return app;
    }

    /// <summary>The protocol's REST routes, each carrying the gRPC method it stands for (<see cref="OpenInferenceRoute"/>).</summary>
    public static WebApplication MapOpenInferenceRest(this WebApplication app)
    {
        if (!app.Services.GetRequiredService<IOptions<OpenInferenceOptions>>().Value.ServesRest) return app;
        var rest = app.Services.GetRequiredService<OpenInferenceRest>();
        Route(app.MapGet("/v2/health/live", rest.Live), "ServerLive");
        Route(app.MapGet("/v2/health/ready", rest.Ready), "ServerReady");
        Route(app.MapGet("/v2", rest.ServerMetadata), "ServerMetadata");
        foreach (var model in new[] { "/v2/models/{model}", "/v2/models/{model}/versions/{version}" })
        {
            Route(app.MapGet(model, rest.ModelMetadata), "ModelMetadata");
            Route(app.MapGet(model + "/ready", rest.ModelReady), "ModelReady");
            Route(app.MapPost(model + "/infer", rest.Infer), "ModelInfer");
        }
        return app;
    }

    private static void Route(IEndpointConventionBuilder route, string method) => route.WithMetadata(new OpenInferenceRoute(Service + method));
}
