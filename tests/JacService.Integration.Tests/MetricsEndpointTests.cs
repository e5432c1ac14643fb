using System.Net;
using Grpc.Core;
using Grpc.Net.Client;
using JacService.Protos.V1;

namespace JacService.Integration.Tests;

/// <summary>
/// /metrics as a scraper sees it, straight from the server: every JacService instrument with its labels, the
/// ASP.NET Core, Kestrel and runtime meters, and the metrics and gRPC ports each serving only their own protocol.
/// </summary>
public sealed class MetricsEndpointTests(MetricsEndpointTests.PaddingServer fixture) : IClassFixture<MetricsEndpointTests.PaddingServer>, IDisposable
{
    private const int Jacobians = 4, Predicts = 2;
    private const string JacobianRoute = "/jacservice.v1.JacobianService/Jacobian";
    // Its own server, so the request counts below are exactly this test's; the other tests here only call ListModels.
    private readonly ServerProcess _server = fixture.Server;
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(10) };

    public sealed class PaddingServer : IAsyncLifetime
    {
        // Padding makes the 3-row Predict batches 4 rows, so the padded-rows counter has something to count.
        public ServerProcess Server { get; } = new() { ExtraArgs = ["--Batching:PadToBucket=true"] };
        public Task InitializeAsync() => Server.InitializeAsync();
        public Task DisposeAsync() => Server.DisposeAsync();
    }

    public void Dispose() => _http.Dispose();

    private string MetricsUrl => $"http://127.0.0.1:{_server.MetricsPort}/metrics";

    [Fact]
    public async Task EveryInstrumentIsScrapedWithItsLabels()
    {
        await Traffic.SendJacobians(_server.Client, Jacobians);
        int predictRows = await Traffic.SendPredicts(_server.Client, Predicts);

        // The exporter may answer from a short-lived cache of the previous scrape, and ASP.NET Core records a request
        // only after its response went out, which can be after the client has it; poll until the traffic shows.
        List<PrometheusSample> samples = [];
        string text = "";
        for (var deadline = DateTime.UtcNow.AddSeconds(15); DateTime.UtcNow < deadline; await Task.Delay(200))
        {
            text = await _http.GetStringAsync(MetricsUrl);
            samples = PrometheusText.Parse(text);
            if (Sum(samples, "jacservice_requests_total", ("method", "Predict")) >= Predicts
                && Sum(samples, "jacservice_requests_total", ("method", "Jacobian")) >= Jacobians
                && Sum(samples, "http_server_request_duration_seconds_count", ("http_route", JacobianRoute)) >= Jacobians) break;
        }

        string[] request = ["model", "method", "status"], kind = ["model", "kind"], batch = ["model", "kind", "mode"];
        var expected = new (string Name, string[] Labels)[]
        {
            ("jacservice_requests_total", request),
            ("jacservice_request_duration_seconds_bucket", [.. request, "le"]),
            ("jacservice_request_duration_seconds_sum", request),
            ("jacservice_request_duration_seconds_count", request),
            ("jacservice_queue_wait_seconds_bucket", [.. kind, "le"]),
            ("jacservice_queue_wait_seconds_count", kind),
            ("jacservice_batch_size_bucket", [.. batch, "le"]),
            ("jacservice_batch_size_sum", batch),
            ("jacservice_batch_size_count", batch),
            ("jacservice_batch_padded_rows_total", batch),
            ("jacservice_batch_duration_seconds_bucket", [.. batch, "bucket", "device", "le"]),
            ("jacservice_batch_duration_seconds_count", [.. batch, "bucket", "device"]),
            ("jacservice_queue_depth", ["model", "version"]),
            ("jacservice_models_loaded", ["state"]),
            ("jacservice_model_predict_runtime", ["model", "version", "runtime"]),
            ("jacservice_model_loads_total", ["model", "outcome"]),
            ("jacservice_model_load_duration_seconds_count", ["model", "outcome"]),
        };
        foreach (var (name, labels) in expected)
        {
            Has(samples, text, name, s => s.Name == name);
            foreach (var sample in samples.Where(s => s.Name == name))
                Assert.True(labels.All(sample.Labels.ContainsKey),
                    $"{name} has labels [{string.Join(", ", sample.Labels.Keys)}], expected at least [{string.Join(", ", labels)}]");
        }

        Assert.Equal(Jacobians, Sum(samples, "jacservice_requests_total", ("model", Traffic.Model), ("method", "Jacobian"), ("status", "OK")));
        Assert.Equal(Predicts, Sum(samples, "jacservice_requests_total", ("model", Traffic.Model), ("method", "Predict"), ("status", "OK")));
        Assert.Equal(Jacobians, Sum(samples, "jacservice_batch_size_sum", ("model", Traffic.Model), ("kind", "jacobian")));
        Assert.Equal(predictRows, Sum(samples, "jacservice_batch_size_sum", ("model", Traffic.Model), ("kind", "predict")));
        // Batches carry the mode that ran: "none" for predict, "forward" or "reverse" (never "auto") for a Jacobian.
        Assert.Equal(predictRows, Sum(samples, "jacservice_batch_size_sum", ("model", Traffic.Model), ("kind", "predict"), ("mode", "none")));
        Assert.Equal(Jacobians, Sum(samples, "jacservice_batch_size_sum", ("model", Traffic.Model), ("kind", "jacobian"), ("mode", "forward"))
            + Sum(samples, "jacservice_batch_size_sum", ("model", Traffic.Model), ("kind", "jacobian"), ("mode", "reverse")));
        Assert.True(Sum(samples, "jacservice_batch_padded_rows_total", ("kind", "predict")) > 0, "3-row batches padded to 4 should count padded rows");
        // ServerProcess's repository: every fixture's version 1 plus mlp_tanh/2 and mixed_activations at opset 20 load; 7
        // broken ones (garbage, missing_file, unsupported_op, invalid_graph and 3 bad config.json files) fail.
        Assert.Equal(Testing.Fixtures.Names.Count() + 2, Sum(samples, "jacservice_models_loaded", ("state", "ready")));
        Assert.Equal(7, Sum(samples, "jacservice_models_loaded", ("state", "failed")));
        Assert.Equal(0, Sum(samples, "jacservice_models_loaded", ("state", "loading")));
        // Every fixture is float32 in and out: ONNX Runtime serves each READY version's Predict.
        Assert.Equal(Testing.Fixtures.Names.Count() + 2, Sum(samples, "jacservice_model_predict_runtime", ("runtime", "onnxruntime")));
        Assert.Equal(Testing.Fixtures.Names.Count() + 2, Sum(samples, "jacservice_model_loads_total", ("outcome", "ready")));
        Assert.Equal(7, Sum(samples, "jacservice_model_loads_total", ("outcome", "failed")));
        Has(samples, text, "jacservice_queue_depth for mlp_tanh version 2 (the latest)",
            s => s.Name == "jacservice_queue_depth" && s.Labels["model"] == Traffic.Model && s.Labels["version"] == "2");

        // ASP.NET Core hosting and Kestrel: the gRPC calls are HTTP/2 requests on their route, over a connection still open.
        Has(samples, text, "http_server_request_duration_seconds for the Jacobian route over HTTP/2",
            s => s.Name == "http_server_request_duration_seconds_count"
                && s.Labels.GetValueOrDefault("http_route") == JacobianRoute
                && s.Labels.GetValueOrDefault("network_protocol_version") == "2" && s.Value == Jacobians);
        Has(samples, text, "kestrel_active_connections >= 1 on the gRPC port",
            s => s.Name == "kestrel_active_connections" && s.Labels.GetValueOrDefault("server_port") == _server.Port.ToString() && s.Value >= 1);
        Has(samples, text, "kestrel_queued_connections", s => s.Name == "kestrel_queued_connections");
        // The runtime meter (System.Runtime).
        foreach (var name in new[] { "dotnet_gc_collections_total", "dotnet_process_cpu_time_seconds_total", "dotnet_process_memory_working_set_bytes", "dotnet_assembly_count" })
            Has(samples, text, name, s => s.Name == name);
        // The resource, as Prometheus conventionally receives it.
        Has(samples, text, "target_info with service_name=jacservice",
            s => s.Name == "target_info" && s.Labels.GetValueOrDefault("service_name") == "jacservice");
    }

    [Fact]
    public async Task ModelNamesTheRepositoryDoesNotListShareOneLabel()
    {
        // Each made-up name once labelled series of its own: 3,000 of them grew /metrics from 77 KB to 10.5 MB.
        var madeUp = Enumerable.Range(0, 40).Select(_ => "made-up-" + Guid.NewGuid().ToString("N")).ToList();
        foreach (var name in madeUp)
            await Assert.ThrowsAsync<RpcException>(() => _server.Client.PredictAsync(new PredictRequest { Model = name }).ResponseAsync);
        using (var stream = _server.Client.JacobianStream(deadline: DateTime.UtcNow.AddSeconds(30)))
        {
            foreach (var name in madeUp.Take(10)) await stream.RequestStream.WriteAsync(new JacobianRequest { Model = name });
            await stream.RequestStream.CompleteAsync();
            await foreach (var answer in stream.ResponseStream.ReadAllAsync()) Assert.Equal((int)StatusCode.NotFound, answer.Code);
        }

        List<PrometheusSample> samples = [];
        string text = "";
        for (var deadline = DateTime.UtcNow.AddSeconds(15); DateTime.UtcNow < deadline; await Task.Delay(200))
        {
            text = await _http.GetStringAsync(MetricsUrl);
            samples = PrometheusText.Parse(text);
            if (Sum(samples, "jacservice_requests_total", ("model", ""), ("status", "NOT_FOUND")) >= madeUp.Count + 10) break;
        }
        Assert.Equal(madeUp.Count, Sum(samples, "jacservice_requests_total", ("model", ""), ("method", "Predict"), ("status", "NOT_FOUND")));
        Assert.Equal(10, Sum(samples, "jacservice_requests_total", ("model", ""), ("method", "JacobianStream"), ("status", "NOT_FOUND")));
        Assert.DoesNotContain("made-up-", text);
    }

    private static void Has(List<PrometheusSample> samples, string text, string what, Func<PrometheusSample, bool> match) =>
        Assert.True(samples.Any(match), $"no {what} in /metrics:\n{text}");

    [Fact]
    public async Task GrpcPortServesNoMetrics()
    {
        // The gRPC port is HTTP/2 only: a scraper's HTTP/1.1 request is refused, and even over HTTP/2 there is no /metrics.
        using var http1 = await _http.SendAsync(new HttpRequestMessage(HttpMethod.Get, $"http://{_server.Target}/metrics"));
        Assert.NotEqual(HttpStatusCode.OK, http1.StatusCode);
        using var http2 = await _http.SendAsync(new HttpRequestMessage(HttpMethod.Get, $"http://{_server.Target}/metrics")
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        });
        Assert.Equal(HttpVersion.Version20, http2.Version);
        Assert.Equal(HttpStatusCode.NotFound, http2.StatusCode);
        Assert.DoesNotContain("jacservice_", await http2.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task MetricsPortServesNoGrpc()
    {
        using var metrics = await _http.GetAsync(MetricsUrl);
        Assert.Equal(HttpStatusCode.OK, metrics.StatusCode);

        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{_server.MetricsPort}");
        var client = new JacobianService.JacobianServiceClient(channel);
        var e = await Assert.ThrowsAsync<RpcException>(() =>
            client.ListModelsAsync(new ListModelsRequest(), deadline: DateTime.UtcNow.AddSeconds(10)).ResponseAsync);
        Assert.NotEqual(StatusCode.DeadlineExceeded, e.StatusCode);

        // The same call on the gRPC port works, so the failure above is the port's doing.
        Assert.NotEmpty((await _server.Client.ListModelsAsync(new ListModelsRequest())).Models);
    }

    private static double Sum(IEnumerable<PrometheusSample> samples, string name, params (string Key, string Value)[] labels) =>
        samples.Where(s => s.Name == name && labels.All(l => s.Labels.GetValueOrDefault(l.Key) == l.Value)).Sum(s => s.Value);
}
