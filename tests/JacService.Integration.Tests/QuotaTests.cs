using System.Net;
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
            Keys.Add("streamer", "jacservice.inference");
            Keys.Add("patient", "jacservice.metadata");
            Keys.Add("rester", "jacservice.metadata");
            Server = new ServerProcess
            {
                ExtraArgs =
                [
                    .. Keys.ServerArgs, "--Models:Warmup=false",
                    "--Quotas:Enabled=true",
                    "--Quotas:Default:RequestsPerSecond=1000",
                    // One call a second after a burst of two: a burst of a dozen calls is refused whatever the machine's speed.
                    "--Quotas:Principals:burst:RequestsPerSecond=1", $"--Quotas:Principals:burst:Burst={Burst}",
                    "--Quotas:Principals:streamer:RequestsPerSecond=1", $"--Quotas:Principals:streamer:Burst={Burst}",
                    "--Quotas:Principals:patient:RequestsPerSecond=4", "--Quotas:Principals:patient:Burst=1",
                    "--Quotas:Principals:rester:RequestsPerSecond=1", $"--Quotas:Principals:rester:Burst={Burst}",
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

    /// <summary>
    /// JacService's own client waits out a rate quota: four calls at once against one call's burst and four a second are
    /// refused with the wait the server names (grpc-retry-pushback-ms), tried again after it, and all answered. (grpc-dotnet
    /// retries whatever the status when the server names a wait, so this held before the client's policy covered
    /// RESOURCE_EXHAUSTED; CallMemoryTests has a refusal that names none.)
    /// </summary>
    [Fact]
    public async Task TheClientLibraryRetriesAfterTheWaitTheQuotaNames()
    {
        var client = ClientTesting.ClientFor(fixture.Server, o => o.ApiKey = fixture.Keys["patient"]);
        var answers = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => client.ListModelsAsync()));
        Assert.All(answers, models => Assert.Contains(models, m => m.Name == "mlp_tanh"));

        double refused = 0;
        for (var deadline = DateTime.UtcNow.AddSeconds(15); refused == 0 && DateTime.UtcNow < deadline; await Task.Delay(200))
            refused = Sum(PrometheusText.Parse(await _http.GetStringAsync($"http://127.0.0.1:{fixture.Server.MetricsPort}/metrics")),
                "jacservice_quota_refusals_total", ("quota", "patient"), ("limit", "rate"));
        Assert.True(refused >= 1, "the calls were answered without any refusal; the test did not reach the quota");
    }

    /// <summary>The stream's call takes one token, each further message another: a stream is no way around the rate.</summary>
    [Fact]
    public async Task EveryMessageOfAStreamCountsAgainstTheRate()
    {
        var request = new JacobianRequest { Model = "pinn" };
        request.Inputs["xt"] = JacService.Client.Tensors.Create([0.1f, 0.2f], 2);
        using var call = fixture.Server.Client.JacobianStream(new Metadata { { "x-api-key", fixture.Keys["streamer"] } },
            deadline: DateTime.UtcNow.AddSeconds(60));
        for (int i = 0; i < Calls; i++) await call.RequestStream.WriteAsync(request);
        await call.RequestStream.CompleteAsync();
        var answers = new List<JacobianStreamResponse>();
        await foreach (var a in call.ResponseStream.ReadAllAsync()) answers.Add(a);

        Assert.Equal(Calls, answers.Count);
        // The bucket starts with Burst tokens: the call takes one, its first message rides on it, the next takes the other.
        Assert.All(answers.Take(Burst), a => Assert.Equal(0, a.Code));
        var refused = answers.Where(a => a.Code != 0).ToList();
        Assert.InRange(refused.Count, 1, Calls - Burst);
        foreach (var a in refused)
        {
            Assert.Equal((int)StatusCode.ResourceExhausted, a.Code);
            Assert.StartsWith("quota exceeded: 'streamer' may make 1 calls per second (bursts of 2), each message of a stream counting as one; retry in ", a.Message);
        }
    }

    /// <summary>
    /// The Open Inference Protocol's REST binding counts against the same quota as gRPC: a burst is refused with HTTP 429,
    /// Retry-After and the reason in the error body; its health routes, like gRPC's probes, are never limited.
    /// </summary>
    [Fact]
    public async Task RestCallsAreRefusedWith429AndRetryAfterWhileProbesPass()
    {
        async Task<HttpResponseMessage> Get(string path, string? key)
        {
            var request = new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{fixture.Server.RestPort}{path}");
            if (key is not null) request.Headers.Add("x-api-key", fixture.Keys[key]);
            return await _http.SendAsync(request);
        }
        var answers = await Task.WhenAll(Enumerable.Range(0, Calls).Select(_ => Get("/v2/models/mlp_tanh", "rester")));
        var refused = answers.Where(a => a.StatusCode != HttpStatusCode.OK).ToList();
        Assert.InRange(refused.Count, 1, Calls - Burst);
        foreach (var answer in refused)
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, answer.StatusCode);
            Assert.True(answer.Headers.RetryAfter?.Delta >= TimeSpan.FromSeconds(1));
            var error = System.Text.Json.JsonDocument.Parse(await answer.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetString();
            Assert.StartsWith("quota exceeded: 'rester' may make 1 calls per second (bursts of 2); retry in ", error);
        }
        // Anonymous callers may make one call a second; the protocol's health routes are exempt.
        var probes = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Get("/v2/health/ready", null)));
        Assert.All(probes, p => Assert.Equal(HttpStatusCode.OK, p.StatusCode));
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
