using System.Globalization;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>
/// A real Prometheus scrapes the server, and the counts of requests and batched rows read back through its query API
/// match the traffic sent.
/// </summary>
public sealed class PrometheusScrapeTests : IAsyncLifetime
{
    private const int Jacobians = 12, Predicts = 3;

    // Its own server, so the counts are exactly this test's traffic.
    private readonly ServerProcess _server = new();
    private PrometheusProcess? _prometheus;

    public async Task InitializeAsync()
    {
        await _server.InitializeAsync();
        _prometheus = await PrometheusProcess.Start($"""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
            scrape_configs:
              - job_name: jacservice
                static_configs:
                  - targets: ['127.0.0.1:{_server.MetricsPort}']
            """);
    }

    [Fact]
    public async Task CountsReadBackThroughPrometheus()
    {
        var prometheus = _prometheus!;
        await Traffic.SendJacobians(_server.Client, Jacobians);
        int predictRows = await Traffic.SendPredicts(_server.Client, Predicts);

        var model = $"model=\"{Traffic.Model}\"";
        var queries = new Dictionary<string, Func<double, bool>>
        {
            [$"sum(jacservice_requests_total{{{model},method=\"Jacobian\",status=\"OK\"}})"] = v => v == Jacobians,
            [$"sum(jacservice_requests_total{{{model},method=\"Predict\",status=\"OK\"}})"] = v => v == Predicts,
            // Each Jacobian call is one row, so the batch sizes sum to the calls however they were batched.
            [$"sum(jacservice_batch_size_sum{{{model},kind=\"jacobian\"}})"] = v => v == Jacobians,
            [$"sum(jacservice_batch_size_count{{{model},kind=\"jacobian\"}})"] = v => v is >= 1 and <= Jacobians,
            [$"sum(jacservice_batch_size_sum{{{model},kind=\"predict\"}})"] = v => v == predictRows,
            [$"sum(jacservice_batch_size_count{{{model},kind=\"predict\"}})"] = v => v is >= 1 and <= Predicts,
            ["up{job=\"jacservice\"}"] = v => v == 1,
        };

        // Scrapes come every second; a value can lag the traffic by a scrape or two, more on a loaded machine.
        var last = new Dictionary<string, double?>();
        for (var deadline = DateTime.UtcNow.AddSeconds(30); DateTime.UtcNow < deadline; await Task.Delay(250))
        {
            foreach (var query in queries.Keys) last[query] = await prometheus.Query(query);
            if (queries.All(q => last[q.Key] is { } v && q.Value(v))) return;
        }
        Assert.Fail("Prometheus did not show the traffic within 30 s:\n"
            + string.Join('\n', queries.Keys.Select(q => $"  {q} = {last.GetValueOrDefault(q)?.ToString(CultureInfo.InvariantCulture) ?? "(no data)"}"))
            + $"\ntargets: {await prometheus.Api("targets")}"
            + $"\nprometheus log:\n{prometheus.Log}");
    }

    public async Task DisposeAsync()
    {
        if (_prometheus is not null) await _prometheus.DisposeAsync();
        await _server.DisposeAsync();
    }
}
