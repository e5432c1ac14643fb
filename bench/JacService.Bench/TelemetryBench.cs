using System.Globalization;
using JacService.Protos.V1;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace JacService.Bench;

/// <summary>
/// The cost of telemetry: the same load with Telemetry:Enabled=false and with everything on (every trace sampled,
/// OTLP/HTTP export of traces, metrics and logs to a sink in this process, Prometheus scraped once a second), and
/// optionally with parts of it (<see cref="Mode"/>), in alternating rounds so drift on a shared machine hits all alike.
/// </summary>
internal static class TelemetryBench
{
    /// <summary>The settings compared: "off" and "on" are the comparison; the rest split "on" into its parts.</summary>
    private static (string[] Args, bool Otlp, bool Scrape) Mode(string mode) => mode switch
    {
        "off" => (["--Telemetry:Enabled=false"], false, false),
        "on" => (["--Telemetry:TraceSampleRatio=1"], true, true),
        "on-no-export" => (["--Telemetry:TraceSampleRatio=1", "--Telemetry:Traces=true", "--Telemetry:MetricsUrl="], false, false),
        "traces" => (["--Telemetry:TraceSampleRatio=1", "--Telemetry:Metrics=false"], true, false),
        "metrics" => (["--Telemetry:Traces=false"], true, true),
        _ => throw new ArgumentException($"unknown telemetry mode '{mode}': expected off, on, on-no-export, traces or metrics"),
    };

    public static async Task<(List<BatchingBench.Point> Points, string Summary)> RunAsync(
        string root, string model, string[] modes, int concurrency, int rounds, double warmupSeconds, double seconds, string[] serverArgs)
    {
        await using var sink = await OtlpSink.StartAsync();
        var otlpEnvironment = new Dictionary<string, string>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.Address,
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            ["OTEL_BSP_SCHEDULE_DELAY"] = "1000",
            ["OTEL_METRIC_EXPORT_INTERVAL"] = "1000",
        };
        var points = new List<BatchingBench.Point>();
        for (int round = 0; round < rounds; round++)
            foreach (var mode in modes)
            {
                var (args, otlp, scrape) = Mode(mode);
                points.Add(await RunOnce(root, model, mode, concurrency, warmupSeconds, seconds, [.. serverArgs, .. args], otlp ? otlpEnvironment : null, scrape));
            }
        double Median(string mode) => points.Where(p => p.Mode == mode).Select(p => p.PerSecond).Order().ElementAt(rounds / 2);
        double baseline = Median(modes[0]);
        var changes = string.Join(", ", modes.Select(m => string.Create(CultureInfo.InvariantCulture,
            $"{m} {Median(m):F0}/s ({(Median(m) / baseline - 1) * 100:+0.0;-0.0} %)")));
        var summary = string.Create(CultureInfo.InvariantCulture,
            $"Median of {rounds} rounds, change against {modes[0]}: {changes}. " +
            $"The sink received {sink.Requests} OTLP export requests ({sink.Bytes / 1024.0 / 1024.0:F1} MiB).");
        return (points, summary);
    }

    private static async Task<BatchingBench.Point> RunOnce(string root, string model, string mode, int concurrency, double warmupSeconds, double seconds,
        string[] args, Dictionary<string, string>? environment, bool scrape)
    {
        using var server = ServerUnderTest.Start(root, Path.Combine(root, "tests", "fixtures", "models"), args, environment);
        using var channel = JacService.Client.JacServiceChannel.Create($"http://127.0.0.1:{server.Port}");
        var client = new JacobianService.JacobianServiceClient(channel);
        await server.WaitUntilReady(client);
        using var scrapes = new CancellationTokenSource();
        var scraper = scrape ? ScrapeEverySecond(server.MetricsPort, scrapes.Token) : Task.CompletedTask;
        var point = await BatchingBench.Measure(client, server, model, mode, concurrency, warmupSeconds, seconds);
        scrapes.Cancel();
        await scraper;
        Console.Error.WriteLine(BatchingBench.Row(point));
        return point;
    }

    /// <summary>What a Prometheus server would cost the service: one full scrape a second.</summary>
    private static async Task ScrapeEverySecond(int port, CancellationToken stop)
    {
        using var http = new HttpClient();
        try
        {
            while (!stop.IsCancellationRequested)
            {
                var text = await http.GetStringAsync($"http://127.0.0.1:{port}/metrics", stop);
                if (!text.Contains("jacservice_requests_total", StringComparison.Ordinal))
                    throw new InvalidOperationException("the scrape has no jacservice_requests_total");
                await Task.Delay(1000, stop);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    /// <summary>Accepts OTLP/HTTP exports and throws them away, counting them, so export cost is real but storage is not.</summary>
    private sealed class OtlpSink : IAsyncDisposable
    {
        private WebApplication _app = null!;
        private long _requests, _bytes;

        public string Address { get; private init; } = "";
        public long Requests => Interlocked.Read(ref _requests);
        public long Bytes => Interlocked.Read(ref _bytes);

        public static async Task<OtlpSink> StartAsync()
        {
            int port = ServerUnderTest.FreePort();
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
            builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
            var sink = new OtlpSink { Address = $"http://127.0.0.1:{port}" };
            sink._app = builder.Build();
            sink._app.MapPost("/v1/{signal}", async (HttpContext context) =>
            {
                using var body = new MemoryStream();
                await context.Request.Body.CopyToAsync(body);
                Interlocked.Increment(ref sink._requests);
                Interlocked.Add(ref sink._bytes, body.Length);
                // An empty Export*ServiceResponse is zero bytes of protobuf.
                context.Response.ContentType = "application/x-protobuf";
            });
            await sink._app.StartAsync();
            return sink;
        }

        public async ValueTask DisposeAsync() => await _app.DisposeAsync();
    }
}
