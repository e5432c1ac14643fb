using System.Diagnostics;
using System.Net;
using Google.Protobuf;
using Grpc.Core;
using JacService.Client;
using JacService.Protos.V1;
using JacService.Server.Extensions;
using JacService.Server.Telemetry;
using JacService.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Trace;
using StatusCode = Grpc.Core.StatusCode;

namespace JacService.Server.Tests;

/// <summary>
/// The real server, in this process so an in-memory exporter can see its spans, on a loopback port. The batch
/// fills at 8 rows and otherwise waits 10 s, so 8 concurrent requests are always served by exactly one batch.
/// </summary>
[Collection(TracingCollection.Name)]
public sealed class TracingTests : IAsyncLifetime
{
    private const int BatchRows = 8;
    private readonly List<Activity> _spans = [];
    private readonly string _root = Path.Combine(Path.GetTempPath(), "jacservice-tracing-" + Guid.NewGuid().ToString("N")[..8]);
    private WebApplication _app = null!;
    private string _address = "";
    private JacobianService.JacobianServiceClient _client = null!;
    private global::Grpc.Net.Client.GrpcChannel _channel = null!;

    public async Task InitializeAsync()
    {
        var version = Directory.CreateDirectory(Path.Combine(_root, "mlp_tanh", "1")).FullName;
        File.Copy(Fixtures.ModelPath("mlp_tanh"), Path.Combine(version, "model.onnx"));
        await StartServer();
    }

    private async Task StartServer(params string[] settings)
    {
        int port = FreePorts.Next();
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions
        {
            Args =
            [
                "--urls", $"http://127.0.0.1:{port}", $"--Models:Root={_root}", "--Telemetry:MetricsUrl=",
                $"--Batching:MaxBatchSize={BatchRows}", "--Batching:MaxQueueDelayMicroseconds=10000000",
                "--Batching:AdaptiveDelay=false", "--Telemetry:Traces=true", .. settings,
            ],
            ContentRootPath = AppContext.BaseDirectory,
            EnvironmentName = "Production",
        });
        builder.AddJacService();
        builder.Services.ConfigureOpenTelemetryTracerProvider(t => t.AddInMemoryExporter(_spans));
        _app = builder.Build();
        _app.MapJacService();
        await _app.StartAsync();
        _address = $"http://127.0.0.1:{port}";
        _channel = JacServiceChannel.Create(_address);
        _client = new JacobianService.JacobianServiceClient(_channel);
        await WaitForModel();
    }

    public async Task DisposeAsync()
    {
        await StopServer();
        Directory.Delete(_root, recursive: true);
    }

    private async Task StopServer()
    {
        _channel.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    [Fact]
    public async Task OneBatchLinksTheServerSpansOfAllItsRequests()
    {
        var calls = Enumerable.Range(0, BatchRows).Select(i => _client.JacobianAsync(Request(i)).ResponseAsync).ToList();
        await Task.WhenAll(calls);

        var batch = Assert.Single(await SpansWhere(s => s.OperationName == JacServiceTelemetry.BatchSpan, 1));
        var servers = await SpansWhere(s => s.Kind == ActivityKind.Server && Tag(s, "rpc.method") == "jacservice.v1.JacobianService/Jacobian", BatchRows);
        var queues = await SpansWhere(s => s.OperationName == JacServiceTelemetry.QueueSpan, BatchRows);

        Assert.All(servers, s =>
        {
            Assert.Equal("grpc", Tag(s, "rpc.system.name"));
            Assert.Equal("OK", Tag(s, "rpc.response.status_code"));
            // The earlier conventions' names, which the service adds for existing dashboards.
            Assert.Equal("grpc", Tag(s, "rpc.system"));
            Assert.Equal("jacservice.v1.JacobianService", Tag(s, "rpc.service"));
            Assert.Equal("0", Tag(s, "rpc.grpc.status_code"));
            Assert.Equal(ActivityStatusCode.Unset, s.Status);
        });
        // Each queue span is the child of one server span; the batch starts a trace of its own and links to all.
        Assert.Equal(servers.Select(s => s.SpanId.ToHexString()).Order(), queues.Select(q => q.ParentSpanId.ToHexString()).Order());
        Assert.Equal(default, batch.ParentSpanId);
        Assert.Equal(
            servers.Select(s => $"{s.TraceId}-{s.SpanId}").Order(),
            batch.Links.Select(l => $"{l.Context.TraceId}-{l.Context.SpanId}").Order());

        Assert.Equal("mlp_tanh", Tag(batch, "jacservice.model"));
        Assert.Equal("1", Tag(batch, "jacservice.model.version"));
        Assert.Equal("jacobian", Tag(batch, "jacservice.kind"));
        Assert.Equal("8", Tag(batch, "jacservice.batch.size"));
        Assert.Equal("8", Tag(batch, "jacservice.batch.bucket"));
        Assert.Equal("0", Tag(batch, "jacservice.batch.padded_rows"));
        Assert.Equal("32", Tag(batch, "jacservice.tangent_width"));
        Assert.Equal("cpu", Tag(batch, "jacservice.device"));
        Assert.Contains(Tag(batch, "jacservice.mode"), new[] { "forward", "reverse" }); // what AUTO ran, never "auto"
        Assert.All(queues, q => Assert.Equal("mlp_tanh", Tag(q, "jacservice.model")));
    }

    [Fact]
    public async Task SecondOrderBatchesSayWhatTheyComputed()
    {
        var x = new Tensor { Shape = { BatchRows, 32 }, Data = { Enumerable.Range(0, BatchRows * 32).Select(i => (float)Math.Sin(i)) } };
        // BatchRows rows fill a batch at once, so neither waits out the 10 s delay.
        await _client.BatchHessianAsync(new BatchHessianRequest { Model = "mlp_tanh", Inputs = { ["x"] = x } });
        await _client.BatchLaplacianAsync(new BatchLaplacianRequest { Model = "mlp_tanh", Inputs = { ["x"] = x }, Axes = { 3, 7 }, IncludeJacobian = true });

        var hessian = Assert.Single(await SpansWhere(s => s.OperationName == JacServiceTelemetry.BatchSpan && Tag(s, "jacservice.kind") == "hessian", 1));
        Assert.Equal("32", Tag(hessian, "jacservice.tangent_width"));
        Assert.Equal("False", Tag(hessian, "jacservice.include_jacobian"));
        Assert.Equal("forward", Tag(hessian, "jacservice.mode"));
        Assert.Equal("8", Tag(hessian, "jacservice.batch.size"));
        var laplacian = Assert.Single(await SpansWhere(s => s.OperationName == JacServiceTelemetry.BatchSpan && Tag(s, "jacservice.kind") == "laplacian", 1));
        Assert.Equal("2", Tag(laplacian, "jacservice.laplacian.axes"));
        Assert.Equal("True", Tag(laplacian, "jacservice.include_jacobian"));
        Assert.Equal("forward", Tag(laplacian, "jacservice.mode"));
        var queues = await SpansWhere(s => s.OperationName == JacServiceTelemetry.QueueSpan, 2);
        Assert.Equal(["hessian", "laplacian"], queues.Select(q => Tag(q, "jacservice.kind")).Order());
    }

    [Fact]
    public async Task ACallersTraceparentBecomesTheParentOfTheServerSpan()
    {
        var traceId = ActivityTraceId.CreateRandom();
        var parentId = ActivitySpanId.CreateRandom();
        var headers = new Metadata { { "traceparent", $"00-{traceId}-{parentId}-01" } };
        // Alone, the request waits the full max delay; a short one keeps the test quick.
        var calls = Enumerable.Range(0, BatchRows)
            .Select(i => _client.JacobianAsync(Request(i), i == 0 ? headers : null).ResponseAsync).ToList();
        await Task.WhenAll(calls);

        var server = Assert.Single(await SpansWhere(s => s.Kind == ActivityKind.Server && s.TraceId == traceId, 1));
        Assert.Equal(parentId, server.ParentSpanId);
        var queue = Assert.Single(await SpansWhere(s => s.OperationName == JacServiceTelemetry.QueueSpan && s.TraceId == traceId, 1));
        Assert.Equal(server.SpanId, queue.ParentSpanId);
    }

    [Fact]
    public async Task TheStandardSamplerVariableWinsOverTheRatioSetting()
    {
        // parentbased_always_off records no new trace but follows a caller's sampled one; with the default ratio
        // setting (1.0) all eight requests would be recorded.
        await StopServer();
        await StartServer("--OTEL_TRACES_SAMPLER=parentbased_always_off", "--Telemetry:TraceSampleRatio=1");
        var traceId = ActivityTraceId.CreateRandom();
        var headers = new Metadata { { "traceparent", $"00-{traceId}-{ActivitySpanId.CreateRandom()}-01" } };
        await Task.WhenAll(Enumerable.Range(0, BatchRows).Select(i => _client.JacobianAsync(Request(i), i == 0 ? headers : null).ResponseAsync));

        bool IsJacobian(Activity s) => s.Kind == ActivityKind.Server && Tag(s, "rpc.method") == "jacservice.v1.JacobianService/Jacobian";
        var server = Assert.Single(await SpansWhere(IsJacobian, 1));
        Assert.Equal(traceId, server.TraceId);
        await Task.Delay(500); // the other seven server spans, had they been sampled, would have ended by now
        Assert.Single(Snapshot(), IsJacobian);
        Assert.DoesNotContain(Snapshot(), s => s.OperationName == JacServiceTelemetry.BatchSpan); // a root: never sampled
    }

    [Fact]
    public async Task AServerFaultIsAnErrorAndACallersMistakeIsNot()
    {
        // Alone in the queue, this request waits 10 s for a full batch; its 300 ms deadline passes first.
        Assert.Equal(StatusCode.DeadlineExceeded, await CallWithServerSideDeadline(Request(0), "300m"));

        var wrongShape = new JacobianRequest { Model = "mlp_tanh" };
        wrongShape.Inputs["x"] = Tensors.Create(new float[5], 5);
        var bad = await Assert.ThrowsAsync<RpcException>(() => _client.JacobianAsync(wrongShape).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, bad.StatusCode);

        var deadline = Assert.Single(await SpansWhere(s => s.Kind == ActivityKind.Server && Tag(s, "rpc.grpc.status_code") == "4", 1));
        Assert.Equal(ActivityStatusCode.Error, deadline.Status);
        var invalid = Assert.Single(await SpansWhere(s => s.Kind == ActivityKind.Server && Tag(s, "rpc.grpc.status_code") == "3", 1));
        Assert.Equal(ActivityStatusCode.Unset, invalid.Status);
        Assert.Contains(invalid.Events, e => e.Name == "exception");
        // The request left the queue without being computed: its queue span ends, and no batch ran for it.
        Assert.Single(await SpansWhere(s => s.OperationName == JacServiceTelemetry.QueueSpan, 1));
        Assert.DoesNotContain(Snapshot(), s => s.OperationName == JacServiceTelemetry.BatchSpan);
    }

    private static JacobianRequest Request(int seed)
    {
        var rng = new Random(seed);
        var request = new JacobianRequest { Model = "mlp_tanh" };
        request.Inputs["x"] = Tensors.Create(Enumerable.Range(0, 32).Select(_ => (float)rng.NextDouble()).ToArray(), 32);
        return request;
    }

    /// <summary>
    /// A raw gRPC call that sends grpc-timeout but never gives up itself, so the server's deadline is what ends it.
    /// (A gRPC client cancels at its own deadline, racing the server's, and the server then records CANCELLED.)
    /// </summary>
    private async Task<StatusCode> CallWithServerSideDeadline(JacobianRequest request, string timeout)
    {
        var body = request.ToByteArray();
        var frame = new byte[5 + body.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(1), body.Length);
        body.CopyTo(frame, 5);
        using var http = new HttpClient();
        using var message = new HttpRequestMessage(HttpMethod.Post, $"{_address}/jacservice.v1.JacobianService/Jacobian")
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(frame),
        };
        message.Content.Headers.ContentType = new("application/grpc");
        message.Headers.TryAddWithoutValidation("te", "trailers");
        message.Headers.TryAddWithoutValidation("grpc-timeout", timeout);
        using var response = await http.SendAsync(message);
        await response.Content.ReadAsByteArrayAsync();
        var status = response.TrailingHeaders.TryGetValues("grpc-status", out var t) ? t.First()
            : response.Headers.GetValues("grpc-status").First();
        return (StatusCode)int.Parse(status);
    }

    private static string? Tag(Activity span, string key) => span.GetTagItem(key)?.ToString();

    private List<Activity> Snapshot()
    {
        lock (_spans) return [.. _spans];
    }

    /// <summary>Spans end (and are exported) after the answer is sent, so wait for the expected number.</summary>
    private async Task<List<Activity>> SpansWhere(Func<Activity, bool> match, int count)
    {
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (true)
        {
            var found = Snapshot().Where(match).ToList();
            if (found.Count >= count || DateTime.UtcNow > deadline)
            {
                Assert.True(found.Count == count, $"expected {count} matching spans, found {found.Count}; all spans: " +
                    string.Join(", ", Snapshot().Select(s => $"{s.Kind} {s.DisplayName} [{string.Join(" ", s.TagObjects.Select(t => $"{t.Key}={t.Value}"))}] {s.Status}")));
                return found;
            }
            await Task.Delay(20);
        }
    }

    private async Task WaitForModel()
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            try
            {
                if ((await _client.GetModelAsync(new GetModelRequest { Model = "mlp_tanh" })).State == "READY") return;
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
            {
                // The repository scan has not registered it yet.
            }
            if (DateTime.UtcNow > deadline) throw new TimeoutException("mlp_tanh did not load");
            await Task.Delay(100);
        }
    }
}

/// <summary>The "JacService" ActivitySource is process-wide: other tests' batchers must not run while spans are counted.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TracingCollection
{
    public const string Name = "tracing";
}
