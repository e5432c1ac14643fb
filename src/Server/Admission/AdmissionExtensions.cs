using System.Diagnostics.Metrics;
using JacService.Server.Execution;
using JacService.Server.Telemetry;
using Microsoft.Extensions.Options;

namespace JacService.Server.Admission;

/// <summary>
/// What the server takes in before a call reaches its handler, and how long its answer may wait for the client: the call
/// memory budget and its middleware, and the response write timeout.
/// </summary>
public static class AdmissionExtensions
{
    public static WebApplicationBuilder AddJacServiceAdmission(this WebApplicationBuilder builder)
    {
        builder.Services.AddSingleton(sp => new CallMemoryBudget(sp.GetRequiredService<IOptions<LimitsOptions>>(),
            sp.GetRequiredService<IMeterFactory>().Create(JacServiceTelemetry.Name)));
        return builder;
    }

    /// <summary>After authentication and quotas, so a refused caller is refused for who it is before what it sends.</summary>
    public static WebApplication UseJacServiceAdmission(this WebApplication app)
    {
        app.UseMiddleware<CallMemoryMiddleware>();
        app.UseMiddleware<ResponseWriteTimeoutMiddleware>();
        return app;
    }
}
