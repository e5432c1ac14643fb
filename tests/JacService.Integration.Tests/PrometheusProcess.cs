using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>
/// A real Prometheus (the Debian package; scripts/install-test-deps.sh installs it) on a free loopback port, with a
/// configuration the test writes, and its HTTP API.
/// </summary>
public sealed class PrometheusProcess : IAsyncDisposable
{
    public static readonly string Binary = Environment.GetEnvironmentVariable("PROMETHEUS_BINARY") ?? "/usr/bin/prometheus";

    /// <summary>promtool, from the same package.</summary>
    public static string Promtool => Path.Combine(Path.GetDirectoryName(Binary)!, "promtool");

    private readonly Process _process = new();
    private readonly List<string> _log = [];
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(10) };

    public string Directory { get; } = Path.Combine(Path.GetTempPath(), "jacservice-prom-" + Guid.NewGuid().ToString("N")[..8]);
    public int Port { get; } = FreePorts.Next();

    public string Log
    {
        get { lock (_log) return string.Join('\n', _log.TakeLast(40)); }
    }

    /// <summary>Starts Prometheus with <paramref name="config"/> as its prometheus.yml and returns once it is ready.</summary>
    public static async Task<PrometheusProcess> Start(string config)
    {
        if (!File.Exists(Binary))
            Assert.Fail($"{Binary} not found: install the Debian package 'prometheus' (scripts/install-test-deps.sh does)");
        var prometheus = new PrometheusProcess();
        System.IO.Directory.CreateDirectory(prometheus.Directory);
        var path = Path.Combine(prometheus.Directory, "prometheus.yml");
        await File.WriteAllTextAsync(path, config);
        prometheus._process.StartInfo = new ProcessStartInfo(Binary)
        {
            ArgumentList =
            {
                $"--config.file={path}", $"--storage.tsdb.path={Path.Combine(prometheus.Directory, "data")}",
                $"--web.listen-address=127.0.0.1:{prometheus.Port}",
            },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        prometheus._process.OutputDataReceived += (_, e) => prometheus.Add(e.Data);
        prometheus._process.ErrorDataReceived += (_, e) => prometheus.Add(e.Data);
        prometheus._process.Start();
        prometheus._process.BeginOutputReadLine();
        prometheus._process.BeginErrorReadLine();
        await prometheus.WaitUntilReady(TimeSpan.FromSeconds(30));
        return prometheus;
    }

    private void Add(string? line)
    {
        if (line is not null) lock (_log) _log.Add(line);
    }

    private async Task WaitUntilReady(TimeSpan timeout)
    {
        for (var deadline = DateTime.UtcNow + timeout; DateTime.UtcNow < deadline; await Task.Delay(200))
        {
            if (_process.HasExited) throw new InvalidOperationException($"prometheus exited with {_process.ExitCode}:\n{Log}");
            try
            {
                using var ready = await _http.GetAsync($"http://127.0.0.1:{Port}/-/ready");
                if (ready.StatusCode == HttpStatusCode.OK) return;
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
        }
        throw new TimeoutException($"prometheus not ready after {timeout}:\n{Log}");
    }

    /// <summary>The "data" of a successful answer of the API at <paramref name="path"/> (e.g. "alerts", "rules"), as text.</summary>
    public async Task<JsonElement> Api(string path)
    {
        var json = await _http.GetStringAsync($"http://127.0.0.1:{Port}/api/v1/{path}");
        using var doc = JsonDocument.Parse(json);
        Assert.Equal("success", doc.RootElement.GetProperty("status").GetString());
        return doc.RootElement.GetProperty("data").Clone();
    }

    /// <summary>The value of an instant query with a single-series result, or null while there is none.</summary>
    public async Task<double?> Query(string promql)
    {
        var result = (await Api($"query?query={Uri.EscapeDataString(promql)}")).GetProperty("result");
        if (result.GetArrayLength() == 0) return null;
        Assert.Equal(1, result.GetArrayLength());
        // "value": [ <unix time>, "<value as a string>" ]
        return double.Parse(result[0].GetProperty("value")[1].GetString()!, CultureInfo.InvariantCulture);
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }
        catch (InvalidOperationException)
        {
            // Never started.
        }
        _process.Dispose();
        try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { }
    }
}
