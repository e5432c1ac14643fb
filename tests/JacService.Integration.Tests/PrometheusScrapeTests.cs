using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>
/// A real Prometheus (the Debian package; scripts/install-test-deps.sh installs it) scrapes the server, and the
/// counts of requests and batched rows read back through its query API match the traffic sent.
/// </summary>
public sealed class PrometheusScrapeTests : IAsyncLifetime
{
    private static readonly string PrometheusBinary = Environment.GetEnvironmentVariable("PROMETHEUS_BINARY") ?? "/usr/bin/prometheus";
    private const int Jacobians = 12, Predicts = 3;

    // Its own server, so the counts are exactly this test's traffic.
    private readonly ServerProcess _server = new();
    private readonly Process _prometheus = new();
    private readonly List<string> _prometheusLog = [];
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "jacservice-prom-" + Guid.NewGuid().ToString("N")[..8]);
    private readonly int _prometheusPort = FreePorts.Next();
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(10) };

    private string PrometheusLog
    {
        get { lock (_prometheusLog) return string.Join('\n', _prometheusLog.TakeLast(40)); }
    }

    public async Task InitializeAsync()
    {
        if (!File.Exists(PrometheusBinary))
            Assert.Fail($"{PrometheusBinary} not found: install the Debian package 'prometheus' (scripts/install-test-deps.sh does)");
        await _server.InitializeAsync();

        Directory.CreateDirectory(_dir);
        var config = Path.Combine(_dir, "prometheus.yml");
        await File.WriteAllTextAsync(config, $"""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
            scrape_configs:
              - job_name: jacservice
                static_configs:
                  - targets: ['127.0.0.1:{_server.MetricsPort}']
            """);
        _prometheus.StartInfo = new ProcessStartInfo(PrometheusBinary)
        {
            ArgumentList =
            {
                $"--config.file={config}", $"--storage.tsdb.path={Path.Combine(_dir, "data")}",
                $"--web.listen-address=127.0.0.1:{_prometheusPort}",
            },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        _prometheus.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_prometheusLog) _prometheusLog.Add(e.Data); };
        _prometheus.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_prometheusLog) _prometheusLog.Add(e.Data); };
        _prometheus.Start();
        _prometheus.BeginOutputReadLine();
        _prometheus.BeginErrorReadLine();
        await WaitUntilReady(TimeSpan.FromSeconds(30));
    }

    private async Task WaitUntilReady(TimeSpan timeout)
    {
        for (var deadline = DateTime.UtcNow + timeout; DateTime.UtcNow < deadline; await Task.Delay(200))
        {
            if (_prometheus.HasExited) throw new InvalidOperationException($"prometheus exited with {_prometheus.ExitCode}:\n{PrometheusLog}");
            try
            {
                using var ready = await _http.GetAsync($"http://127.0.0.1:{_prometheusPort}/-/ready");
                if (ready.StatusCode == HttpStatusCode.OK) return;
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
        }
        throw new TimeoutException($"prometheus not ready after {timeout}:\n{PrometheusLog}");
    }

    [Fact]
    public async Task CountsReadBackThroughPrometheus()
    {
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
            foreach (var query in queries.Keys) last[query] = await Query(query);
            if (queries.All(q => last[q.Key] is { } v && q.Value(v))) return;
        }
        Assert.Fail("Prometheus did not show the traffic within 30 s:\n"
            + string.Join('\n', queries.Keys.Select(q => $"  {q} = {last.GetValueOrDefault(q)?.ToString(CultureInfo.InvariantCulture) ?? "(no data)"}"))
            + $"\ntargets: {await _http.GetStringAsync($"http://127.0.0.1:{_prometheusPort}/api/v1/targets")}"
            + $"\nprometheus log:\n{PrometheusLog}");
    }

    /// <summary>The value of an instant query with a single-series result, or null while there is none.</summary>
    private async Task<double?> Query(string promql)
    {
        var json = await _http.GetStringAsync($"http://127.0.0.1:{_prometheusPort}/api/v1/query?query={Uri.EscapeDataString(promql)}");
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        Assert.Equal("success", root.GetProperty("status").GetString());
        var result = root.GetProperty("data").GetProperty("result");
        if (result.GetArrayLength() == 0) return null;
        Assert.Equal(1, result.GetArrayLength());
        // "value": [ <unix time>, "<value as a string>" ]
        return double.Parse(result[0].GetProperty("value")[1].GetString()!, CultureInfo.InvariantCulture);
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        try
        {
            if (!_prometheus.HasExited)
            {
                _prometheus.Kill(entireProcessTree: true);
                await _prometheus.WaitForExitAsync();
            }
        }
        catch (InvalidOperationException)
        {
            // Never started (the binary was missing or the server failed first).
        }
        _prometheus.Dispose();
        await _server.DisposeAsync();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
