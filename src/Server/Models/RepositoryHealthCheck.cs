using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace JacService.Server.Models;

/// <summary>Ready (gRPC health SERVING) once every version in the repository has finished loading.</summary>
public sealed class RepositoryHealthCheck(ModelRegistry registry) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(registry.RepositoryLoaded
            ? HealthCheckResult.Healthy("model repository loaded")
            : HealthCheckResult.Unhealthy("model repository still loading"));
}
