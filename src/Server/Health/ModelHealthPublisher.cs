using Grpc.Health.V1;
using Grpc.HealthCheck;
using JacService.Server.Models;
using ServingStatus = Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus;

namespace JacService.Server.Health;

/// <summary>
/// Keeps grpc.health.v1 in step with the registry: the server ("" and the JacobianService name) is SERVING once the
/// repository found at start has loaded, and each model by its name is SERVING while at least one of its versions is
/// READY, NOT_SERVING while none is (loading, failed), and unknown (NOT_FOUND) once it has no version listed. Everything
/// turns NOT_SERVING when the server starts stopping, so probes take the replica out before it closes. Statuses are set
/// on each registry change, so a Watch sees a model come and go as it happens.
/// </summary>
public sealed class ModelHealthPublisher(ModelRegistry registry, HealthServiceImpl health, IHostApplicationLifetime lifetime) : IHostedService
{
    public static readonly string[] ServerNames = ["", Protos.V1.JacobianService.Descriptor.FullName];

    private readonly object _lock = new();
    private HashSet<string> _published = [];
    private volatile bool _stopping;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        registry.Changed += Publish;
        lifetime.ApplicationStopping.Register(() =>
        {
            _stopping = true;
            Publish();
        });
        Publish();
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        registry.Changed -= Publish;
        return Task.CompletedTask;
    }

    private void Publish()
    {
        lock (_lock)
        {
            var server = registry.RepositoryLoaded && !_stopping ? ServingStatus.Serving : ServingStatus.NotServing;
            foreach (var name in ServerNames) health.SetStatus(name, server);
            var models = registry.Entries.GroupBy(e => e.Name)
                .ToDictionary(g => g.Key, g => g.Any(e => e.State == ModelState.Ready) && !_stopping ? ServingStatus.Serving : ServingStatus.NotServing);
            foreach (var (name, status) in models) health.SetStatus(name, status);
            foreach (var gone in _published.Where(n => !models.ContainsKey(n))) health.ClearStatus(gone);
            _published = [.. models.Keys];
        }
    }
}
