using DotNet.Testcontainers.Builders;
using DotNet.Testcontainers.Configurations;
using DotNet.Testcontainers.Containers;
using DotNet.Testcontainers.Images;
using Grpc.Health.V1;
using Grpc.Net.Client;
using JacService.Client;
using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Container.Tests;

/// <summary>
/// One container of the image, run the way the Helm chart runs it (non-root, read-only root filesystem with a /tmp
/// tmpfs), a models folder bind-mounted read-only at /models and the gRPC port published on 127.0.0.1 only.
/// </summary>
public sealed class ServerContainer : IAsyncDisposable
{
    private ServerContainer(IContainer container)
    {
        Container = container;
        Port = container.GetMappedPublicPort(50051);
        MetricsPort = container.GetMappedPublicPort(9464);
        Channel = JacServiceChannel.Create($"http://127.0.0.1:{Port}");
        Client = new JacobianService.JacobianServiceClient(Channel);
    }

    public IContainer Container { get; }
    public int Port { get; }
    /// <summary>The published Prometheus endpoint (plain HTTP/1.1, /metrics).</summary>
    public int MetricsPort { get; }
    public GrpcChannel Channel { get; }
    public JacobianService.JacobianServiceClient Client { get; }

    /// <param name="restartAlways">
    /// Docker's restart policy "always", with the gRPC port on a fixed host port (a restarted container would get a new
    /// random one).
    /// </param>
    public static async Task<ServerContainer> StartAsync(string modelsDir, IReadOnlyDictionary<string, string>? env = null, bool restartAlways = false)
    {
        // The image is local and cannot be pulled: never try.
        var builder = new ContainerBuilder(ContainerEngine.ImageName)
            .WithImagePullPolicy(PullPolicy.Never)
            .WithPortBinding(9464, assignRandomHostPort: true)
            .WithBindMount(modelsDir, "/models", AccessMode.ReadOnly)
            .WithTmpfsMount("/tmp")
            .WithCreateParameterModifier(p =>
            {
                var host = p.HostConfig!; // always set by Testcontainers (it carries the bind mount and port)
                host.ReadonlyRootfs = true;
                if (restartAlways) host.RestartPolicy = new Docker.DotNet.Models.RestartPolicy { Name = Docker.DotNet.Models.RestartPolicyKind.Always };
                foreach (var binding in host.PortBindings?.Values.SelectMany(b => b) ?? []) binding.HostIP = "127.0.0.1";
            });
        builder = restartAlways ? builder.WithPortBinding(FreePorts.Next(), 50051) : builder.WithPortBinding(50051, assignRandomHostPort: true);
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) builder = builder.WithEnvironment(k, v);

        var container = builder.Build();
        await container.StartAsync();
        var server = new ServerContainer(container);
        try
        {
            await server.WaitUntilServing(TimeSpan.FromSeconds(90));
        }
        catch
        {
            // Ryuk (Testcontainers' reaper) is off here, so nobody else would remove a container that never served.
            await server.DisposeAsync();
            throw;
        }
        return server;
    }

    public async Task<HealthCheckResponse.Types.ServingStatus> HealthAsync() =>
        (await new Health.HealthClient(Channel).CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow.AddSeconds(3))).Status;

    public async Task<string> LogsAsync()
    {
        var (stdout, stderr) = await Container.GetLogsAsync();
        return stdout + stderr;
    }

    /// <summary>Until the health service stops answering (the server was killed), so that a later SERVING is the new one's.</summary>
    public async Task WaitUntilDown(TimeSpan timeout)
    {
        for (var deadline = DateTime.UtcNow + timeout; DateTime.UtcNow < deadline; await Task.Delay(10))
        {
            try
            {
                await HealthAsync();
            }
            catch (Grpc.Core.RpcException)
            {
                return;
            }
        }
        throw new TimeoutException($"the server still answered {timeout} after it was killed");
    }

    public async Task WaitUntilServing(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (Container.State == TestcontainersStates.Exited)
                throw new InvalidOperationException($"container exited with {await Container.GetExitCodeAsync()}:\n{await LogsAsync()}");
            try
            {
                if (await HealthAsync() == HealthCheckResponse.Types.ServingStatus.Serving) return;
            }
            catch (Grpc.Core.RpcException)
            {
                // Not listening yet.
            }
            await Task.Delay(250);
        }
        throw new TimeoutException($"container not SERVING after {timeout}:\n{await LogsAsync()}");
    }

    public async ValueTask DisposeAsync()
    {
        Channel.Dispose();
        await Container.DisposeAsync();
    }
}
