using Grpc.Core;
using Grpc.Health.V1;
using JacService.Protos.V1;

namespace JacService.Integration.Tests;

/// <summary>
/// Quotas on the real server: a principal's burst over its rate is refused with RESOURCE_EXHAUSTED and a retry hint
/// while another principal is served; probes are never limited; refusals show in /metrics.
/// </summary>
public sealed class QuotaTests(QuotaTests.QuotaServer fixture) : IClassFixture<QuotaTests.QuotaServer>, IDisposable
{
    private const int Burst = 2, Calls = 12;
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(10) };

    public sealed class QuotaServer : IAsyncLifetime
    {
        public ApiKeys Keys { get; } = new();
        public ServerProcess Server { get; private set; } = null!;

        public Task InitializeAsync()
        {
            Keys.Add("burst", "jacservice.metadata");
            Keys.Add("steady", "jacservice.metadata");
            Server = new ServerProcess
            {
                ExtraArgs =
                [
                    .. Keys.ServerArgs, "--Models:Warmup=false",
                    "--Quotas:Enabled=true",
                    "--Quotas:Default:RequestsPerSecond=1000",
                    // One call a second after a burst of two: a burst of a dozen calls is refused whatever the machine's speed.
                    "--Quotas:Principals:burst:RequestsPerSecond=1", $"--Quotas:Principals:burst:Burst={Burst}",
                    "--Quotas:Anonymous:RequestsPerSecond=1", "--Quotas:Anonymous:Burst=1",
                ],
            };
            return Server.InitializeAsync();
        }

        public Task DisposeAsync() => Server.DisposeAsync();
    }

    public void Dispose() => _http.Dispose();

    [Fact]
    public async Task ABurstOverTheRateIsRefusedWhileAnotherPrincipalIsServed()
    {
        var client = fixture.Server.Client;
        Task<Exception?> Call(string key) => Outcome(client.ListModelsAsync(new ListModelsRequest(), new Metadata { { "x-api-key", fixture.Keys[key] } }).ResponseAsync);

        var outcomes = await Task.WhenAll(Enumerable.Range(0, Calls).SelectMany(_ => new[] { Call("burst"), Call("steady") }));
        var burst = outcomes.Where((_, i) => i % 2 == 0).ToList();
        var steady = outcomes.Where((_, i) => i % 2 == 1).ToList();

        Assert.All(steady, e => Assert.Null(e));
        var refused = burst.OfType<RpcException>().ToList();
        Assert.Equal(burst.Count(e => e is not null), refused.Count);
        // The bucket starts full, so the first calls of the burst always pass.
        Assert.InRange(refused.Count, 1, Calls - Burst);
        foreach (var e in refused)
        {
            Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
            Assert.StartsWith("quota exceeded: 'burst' may make 1 calls per second (bursts of 2); retry in ", e.Status.Detail);
            Assert.True(int.Parse(e.Trailers.GetValue("retry-after")!) >= 1);
            Assert.True(int.Parse(e.Trailers.GetValue("grpc-retry-pushback-ms")!) >= 1);
        }

        var (quota, limiter) = await RefusalsInMetrics(refused.Count);
        Assert.True(quota >= refused.Count, $"jacservice_quota_refusals_total{{quota=\"burst\",limit=\"rate\"}} is {quota}, {refused.Count} were refused");
        Assert.True(limiter >= refused.Count, $"aspnetcore_rate_limiting_requests_total{{result=\"global_limiter\"}} is {limiter}, {refused.Count} were refused");
    }

    [Fact]
    public async Task ProbesAreNeverLimited()
    {
        // Anonymous callers may make one call a second; health checks are anonymous and exempt.
        var health = new Health.HealthClient(fixture.Server.Channel);
        var replies = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => health.CheckAsync(new HealthCheckRequest()).ResponseAsync));
        Assert.All(replies, r => Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, r.Status));
    }

    private static async Task<Exception?> Outcome(Task call)
    {
        try
        {
            await call;
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
    }

    /// <summary>Polls /metrics until the refusals show (the exporter may answer from a short-lived cache).</summary>
    private async Task<(double Quota, double Limiter)> RefusalsInMetrics(int expected)
    {
        (double, double) seen = (0, 0);
        for (var deadline = DateTime.UtcNow.AddSeconds(15); DateTime.UtcNow < deadline; await Task.Delay(200))
        {
            var samples = PrometheusText.Parse(await _http.GetStringAsync($"http://127.0.0.1:{fixture.Server.MetricsPort}/metrics"));
            seen = (
                Sum(samples, "jacservice_quota_refusals_total", ("quota", "burst"), ("limit", "rate")),
                Sum(samples, "aspnetcore_rate_limiting_requests_total", ("aspnetcore_rate_limiting_result", "global_limiter")));
            if (seen.Item1 >= expected && seen.Item2 >= expected) break;
        }
        return seen;
    }

    private static double Sum(IEnumerable<PrometheusSample> samples, string name, params (string Key, string Value)[] labels) =>
        samples.Where(s => s.Name == name && labels.All(l => s.Labels.TryGetValue(l.Key, out var v) && v == l.Value)).Sum(s => s.Value);
}
