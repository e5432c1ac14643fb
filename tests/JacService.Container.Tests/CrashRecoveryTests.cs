using System.Collections.Concurrent;
using System.Diagnostics;
using Grpc.Core;
using JacService.Client;
using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Container.Tests;

/// <summary>
/// The server process killed (SIGKILL) under load in a container with Docker's restart policy: Docker starts it again,
/// it serves again, and a client library whose retries last until the deadline turns the outage into latency (every
/// idempotent call answered), while a client without retries sees it as failed calls. bench/crash_recovery.sh measures
/// the same with numbers (docs/security.md, "Crash recovery").
/// </summary>
[Collection(ImageCollection.Name)]
public sealed class CrashRecoveryTests : IDisposable
{
    private readonly string _models = Directory.CreateTempSubdirectory("jacservice-crash-").FullName;

    public CrashRecoveryTests()
    {
        // Only the model the calls use, so the restart loads what it must and no more.
        CopyDirectory(Path.Combine(Fixtures.ModelsDir, "mlp_tanh"), Path.Combine(_models, "mlp_tanh"));
        // The container's user (1654) reads the bind mount; a temporary folder is the test user's only.
        if (OperatingSystem.IsWindows()) return;
        foreach (var entry in Directory.EnumerateFileSystemEntries(_models, "*", SearchOption.AllDirectories).Append(_models))
            File.SetUnixFileMode(entry, File.GetUnixFileMode(entry) | UnixFileMode.OtherRead | (Directory.Exists(entry) ? UnixFileMode.OtherExecute : 0));
    }

    public void Dispose() => Directory.Delete(_models, recursive: true);

    [Fact]
    public async Task AKilledServerIsRestartedAndRetriesTurnTheOutageIntoLatency()
    {
        await using var server = await ServerContainer.StartAsync(_models, restartAlways: true);
        var address = new Uri($"http://127.0.0.1:{server.Port}");
        var patient = new JacServiceClientOptions { Address = address, Timeout = TimeSpan.FromSeconds(120), RetryUntilDeadline = true };
        var impatient = new JacServiceClientOptions { Address = address, Timeout = TimeSpan.FromSeconds(90), MaxAttempts = 1 };
        using var patientChannel = JacServiceChannel.Create(patient);
        using var impatientChannel = JacServiceChannel.Create(impatient);
        var patientClient = new JacServiceClient(new JacobianService.JacobianServiceClient(patientChannel), patient);
        var impatientClient = new JacServiceClient(new JacobianService.JacobianServiceClient(impatientChannel), impatient);
        var x = Fixtures.Load("mlp_tanh").Inputs["x"].Sample(0);
        var inputs = new Dictionary<string, FloatTensor> { ["x"] = new(x.Floats, x.Shape) };

        var clock = Stopwatch.StartNew();
        using var stop = new CancellationTokenSource();
        var patientCalls = new ConcurrentBag<(double Sent, double Done, StatusCode Status, string Error)>();
        var impatientCalls = new ConcurrentBag<(double Sent, double Done, StatusCode Status, string Error)>();
        async Task Caller(JacServiceClient client, ConcurrentBag<(double, double, StatusCode, string)> calls)
        {
            while (!stop.IsCancellationRequested)
            {
                double sent = clock.Elapsed.TotalSeconds;
                try
                {
                    var result = await client.JacobianAsync("mlp_tanh", inputs);
                    Assert.Equal(new long[] { 16, 32 }, result.Jacobians["y"].Shape);
                    calls.Add((sent, clock.Elapsed.TotalSeconds, StatusCode.OK, ""));
                }
                catch (RpcException e)
                {
                    calls.Add((sent, clock.Elapsed.TotalSeconds, e.StatusCode, $"{e.Status.Detail} ({e.Status.DebugException?.GetType().Name})"));
                    await Task.Delay(20); // a client without retries fails at once while the server is down
                }
            }
        }
        var callers = Enumerable.Range(0, 4).Select(_ => Caller(patientClient, patientCalls))
            .Concat(Enumerable.Range(0, 2).Select(_ => Caller(impatientClient, impatientCalls))).ToList();
        await Until(() => patientCalls.Count(c => c.Status == StatusCode.OK) >= 50, "50 answered calls before the kill");

        // SIGKILL to the server process from the host, as the OOM killer or a crash would end it. `docker kill` counts as
        // a manual stop, after which Docker does not restart the container.
        int pid = int.Parse(ContainerEngine.Run("docker", ["inspect", "-f", "{{.State.Pid}}", server.Container.Id]).Output.Trim());
        Process.GetProcessById(pid).Kill();
        await server.WaitUntilDown(TimeSpan.FromSeconds(30));
        await server.WaitUntilServing(TimeSpan.FromSeconds(180));
        double serving = clock.Elapsed.TotalSeconds;
        // Calls go on for a while on the restarted server, then every caller's last call is awaited.
        int answeredBefore = patientCalls.Count;
        await Until(() => patientCalls.Count >= answeredBefore + 50, "50 more calls after the restart");
        stop.Cancel();
        await Task.WhenAll(callers);

        Assert.Equal("1", ContainerEngine.Run("docker", ["inspect", "-f", "{{.RestartCount}}", server.Container.Id]).Output.Trim());
        // Without retries the outage is failed calls; the first of them marks a moment the server was down for certain
        // (the health poll's "down" can come after a quick restart on a quiet machine, so it is no such mark).
        var outage = impatientCalls.Where(c => c.Status == StatusCode.Unavailable).Select(c => c.Done).DefaultIfEmpty(double.NaN).Min();
        Assert.False(double.IsNaN(outage), "the client without retries saw no UNAVAILABLE");
        // Retrying until the deadline: a call in flight while the server was down was answered by the restarted one
        // (the callers are closed loop, so such calls exist), and no call failed.
        Assert.Empty(patientCalls.Where(c => c.Status != StatusCode.OK).GroupBy(c => c.Status).Select(g => $"{g.Key} x{g.Count()}: {g.First().Error}"));
        Assert.Contains(patientCalls, c => c.Sent < outage && c.Done > outage);
        Assert.Contains(impatientCalls, c => c.Sent > serving && c.Status == StatusCode.OK);
    }

    private static async Task Until(Func<bool> condition, string what)
    {
        for (var deadline = DateTime.UtcNow.AddSeconds(120); !condition(); await Task.Delay(50))
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"no {what} within 120 s");
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.EnumerateFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        foreach (var dir in Directory.EnumerateDirectories(from)) CopyDirectory(dir, Path.Combine(to, Path.GetFileName(dir)));
    }
}
