using Google.Protobuf;
using Grpc.Core;
using JacService.Integration.Tests.Otlp;
using JacService.Integration.Tests.Otlp.Proto;
using JacService.Protos.V1;
using JacService.Testing;
using SpanStatus = JacService.Integration.Tests.Otlp.Proto.Status;

namespace JacService.Integration.Tests;

/// <summary>
/// Traces leave the server over OTLP, both protocols, to a receiver on loopback that decodes what arrives: one
/// server span per RPC, a queue span under each, and batch spans linking back to the RPCs they served.
/// </summary>
public sealed class OtlpExportTests : IAsyncLifetime
{
    private const int Requests = 8;
    private const string ServiceName = "jacservice-test";
    private OtlpReceiver _receiver = null!;

    public async Task InitializeAsync() => _receiver = await OtlpReceiver.StartAsync();

    public async Task DisposeAsync() => await _receiver.DisposeAsync();

    [Theory]
    [InlineData("grpc")]
    [InlineData("http/protobuf")]
    public async Task JacobianSpansArrive(string protocol)
    {
        await using var server = ExportingServer(protocol);
        await server.InitializeAsync();
        await Traffic.SendJacobians(server.Client, Requests);

        var spans = await WaitFor(s => Complete(s), TimeSpan.FromSeconds(30));
        string seen = Describe(spans, server);

        var rpcs = ServerSpans(spans);
        Assert.True(rpcs.Count == Requests, $"expected {Requests} server spans with rpc.method={JacobianMethod}, got {rpcs.Count}\n{seen}");
        foreach (var rpc in rpcs)
        {
            Assert.Equal("grpc", rpc.Attribute("rpc.system.name"));
            Assert.Equal("OK", rpc.Attribute("rpc.response.status_code"));
            Assert.Equal("/jacservice.v1.JacobianService/Jacobian", rpc.Attribute("http.route"));
            Assert.Equal(SpanStatus.Types.StatusCode.Unset, rpc.Span.Status?.Code ?? SpanStatus.Types.StatusCode.Unset);
            Assert.Equal(ServiceName, rpc.ResourceAttribute("service.name"));
        }
        var rpcIds = rpcs.Select(r => Key(r.Span.TraceId, r.Span.SpanId)).ToHashSet();

        var queued = QueueSpans(spans);
        Assert.True(queued.Count == Requests, $"expected {Requests} {QueueSpan} spans, got {queued.Count}\n{seen}");
        foreach (var q in queued)
        {
            Assert.True(rpcIds.Contains(Key(q.Span.TraceId, q.Span.ParentSpanId)),
                $"{QueueSpan} span {q.Span.SpanId.ToBase64()} has no Jacobian server span as its parent\n{seen}");
            Assert.Equal(Traffic.Model, q.Attribute("jacservice.model"));
            Assert.Equal("jacobian", q.Attribute("jacservice.kind"));
            Assert.Equal("1", q.Attribute("jacservice.request.rows"));
            Assert.Equal(ServiceName, q.ResourceAttribute("service.name"));
        }
        Assert.Equal(Requests, queued.Select(q => q.Span.ParentSpanId).Distinct().Count());

        var batches = BatchSpans(spans);
        Assert.NotEmpty(batches);
        foreach (var b in batches)
        {
            Assert.True(b.Span.ParentSpanId.IsEmpty, $"a {BatchSpan} span must be a root span\n{seen}");
            Assert.NotEmpty(b.Span.Links);
            Assert.All(b.Span.Links, l => Assert.Contains(Key(l.TraceId, l.SpanId), rpcIds));
            Assert.Equal(b.Span.Links.Count.ToString(), b.Attribute("jacservice.batch.requests"));
            Assert.Equal(ServiceName, b.ResourceAttribute("service.name"));
        }
        // Every RPC ran in exactly one batch, and the batches' sizes add up to the rows sent.
        var linked = batches.SelectMany(b => b.Span.Links).Select(l => Key(l.TraceId, l.SpanId)).ToList();
        Assert.Equal(rpcIds.Order(), linked.Order());
        Assert.Equal(Requests, batches.Sum(b => int.Parse(b.Attribute("jacservice.batch.size")!)));
    }

    [Fact]
    public async Task CallerMistakesAreNotErrors()
    {
        await using var server = ExportingServer("grpc");
        await server.InitializeAsync();
        var x = Fixtures.Load(Traffic.Model).Inputs["x"].Sample(0);
        var calls = new (string Model, float[] X, StatusCode Expected)[]
        {
            ("no_such_model", x.Floats, StatusCode.NotFound),
            ("garbage", x.Floats, StatusCode.FailedPrecondition),
            (Traffic.Model, [1f, 2f, 3f], StatusCode.InvalidArgument),
        };
        foreach (var (model, input, expected) in calls)
        {
            var e = await Assert.ThrowsAsync<RpcException>(() => server.Client.JacobianAsync(new JacobianRequest
            {
                Model = model,
                Inputs = { ["x"] = JacService.Client.Tensors.Create(input, [input.Length]) },
            }).ResponseAsync);
            Assert.Equal(expected, e.StatusCode);
        }

        var spans = await WaitFor(s => ServerSpans(s).Count >= calls.Length, TimeSpan.FromSeconds(30));
        var rpcs = ServerSpans(spans);
        Assert.True(rpcs.Count == calls.Length, $"expected {calls.Length} server spans, got {rpcs.Count}\n{Describe(spans, server)}");
        Assert.Equal(["FAILED_PRECONDITION", "INVALID_ARGUMENT", "NOT_FOUND"], rpcs.Select(r => r.Attribute("rpc.response.status_code")).Order());
        // Per the RPC conventions a server span is an error only when the server failed, not when the caller erred.
        Assert.All(rpcs, r => Assert.Equal(SpanStatus.Types.StatusCode.Unset, r.Span.Status?.Code ?? SpanStatus.Types.StatusCode.Unset));
        Assert.All(rpcs, r => Assert.Null(r.Attribute("error.type")));
    }

    /// <summary>A JacobianStream's messages: a span each under the stream's server span, each the parent of its queue span and linked from its batch.</summary>
    [Fact]
    public async Task EachStreamMessageHasItsOwnSpan()
    {
        await using var server = ExportingServer("grpc");
        await server.InitializeAsync();
        var x = Fixtures.Load(Traffic.Model).Inputs["x"].Sample(0);
        using (var call = server.Client.JacobianStream(deadline: DateTime.UtcNow.AddSeconds(30)))
        {
            foreach (var input in new[] { x.Floats, x.Floats, [1f, 2f, 3f], x.Floats })
                await call.RequestStream.WriteAsync(new JacobianRequest
                {
                    Model = Traffic.Model,
                    Inputs = { ["x"] = JacService.Client.Tensors.Create(input, [input.Length]) },
                });
            await call.RequestStream.CompleteAsync();
            await foreach (var _ in call.ResponseStream.ReadAllAsync()) { }
        }

        const string streamMethod = "jacservice.v1.JacobianService/JacobianStream";
        var spans = await WaitFor(s => s.Any(r => r.Attribute("rpc.method") == streamMethod) && MessageSpans(s).Count >= 4
            && BatchSpans(s).Sum(b => b.Span.Links.Count) >= 3, TimeSpan.FromSeconds(30));
        string seen = Describe(spans, server);
        var stream = spans.Single(s => s.Span.Kind == Span.Types.SpanKind.Server && s.Attribute("rpc.method") == streamMethod);
        var messages = MessageSpans(spans);
        Assert.True(messages.Count == 4, $"expected 4 message spans\n{seen}");
        Assert.All(messages, m => Assert.Equal(Key(stream.Span.TraceId, stream.Span.SpanId), Key(m.Span.TraceId, m.Span.ParentSpanId)));
        Assert.Equal(["0", "1", "2", "3"], messages.Select(m => m.Attribute("jacservice.stream.sequence")).Order());
        Assert.All(messages, m => Assert.Equal(Traffic.Model, m.Attribute("jacservice.model")));
        // The refused message (INVALID_ARGUMENT) is the caller's mistake: no error status, as on server spans.
        Assert.All(messages, m => Assert.Equal(SpanStatus.Types.StatusCode.Unset, m.Span.Status?.Code ?? SpanStatus.Types.StatusCode.Unset));

        var messageIds = messages.Where(m => m.Attribute("jacservice.stream.sequence") != "2").Select(m => Key(m.Span.TraceId, m.Span.SpanId)).ToHashSet();
        var queued = QueueSpans(spans);
        Assert.Equal(messageIds.Order(), queued.Select(q => Key(q.Span.TraceId, q.Span.ParentSpanId)).Order());
        Assert.Equal(messageIds.Order(), BatchSpans(spans).SelectMany(b => b.Span.Links).Select(l => Key(l.TraceId, l.SpanId)).Order());
    }

    private ServerProcess ExportingServer(string protocol) => new()
    {
        EnvironmentVariables =
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = protocol == "grpc" ? _receiver.GrpcEndpoint : _receiver.HttpEndpoint,
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol,
            // The batch processor's default 5 s delay would dominate the test; 200 ms keeps it short.
            ["OTEL_BSP_SCHEDULE_DELAY"] = "200",
            ["OTEL_SERVICE_NAME"] = ServiceName,
        },
    };

    private const string QueueSpan = "jacservice.queue";
    private const string BatchSpan = "jacservice.batch";

    // The instrumentation follows the RPC semantic conventions as of v1.42: rpc.system.name, a fully qualified
    // rpc.method and rpc.response.status_code (rpc.system, rpc.service and rpc.grpc.status_code are gone).
    private const string JacobianMethod = "jacservice.v1.JacobianService/Jacobian";

    private static List<ReceivedSpan> ServerSpans(IEnumerable<ReceivedSpan> spans) =>
        spans.Where(s => s.Span.Kind == Span.Types.SpanKind.Server && s.Attribute("rpc.method") == JacobianMethod).ToList();

    private static List<ReceivedSpan> QueueSpans(IEnumerable<ReceivedSpan> spans) =>
        spans.Where(s => s.Span.Name == QueueSpan).ToList();

    private static List<ReceivedSpan> MessageSpans(IEnumerable<ReceivedSpan> spans) =>
        spans.Where(s => s.Span.Name == "jacservice.stream.message").ToList();

    private static List<ReceivedSpan> BatchSpans(IEnumerable<ReceivedSpan> spans) =>
        spans.Where(s => s.Span.Name == BatchSpan).ToList();

    // Spans are exported as they end, over several exports and in no fixed order (a queue span and a batch span end
    // before the RPC they belong to): wait for the whole picture, not for a number of spans.
    private static bool Complete(IReadOnlyList<ReceivedSpan> spans)
    {
        var rpcs = ServerSpans(spans);
        if (rpcs.Count < Requests || QueueSpans(spans).Count < Requests) return false;
        var linked = BatchSpans(spans).SelectMany(b => b.Span.Links).Select(l => Key(l.TraceId, l.SpanId)).ToHashSet();
        return rpcs.All(r => linked.Contains(Key(r.Span.TraceId, r.Span.SpanId)));
    }

    private async Task<IReadOnlyList<ReceivedSpan>> WaitFor(Func<IReadOnlyList<ReceivedSpan>, bool> done, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var spans = _receiver.Spans;
            if (done(spans) || DateTime.UtcNow > deadline) return spans;
            await Task.Delay(100);
        }
    }

    private static string Key(ByteString traceId, ByteString spanId) => Convert.ToHexString(traceId.Span) + "/" + Convert.ToHexString(spanId.Span);

    private string Describe(IReadOnlyList<ReceivedSpan> spans, ServerProcess server) =>
        $"{_receiver.Exports} exports, {spans.Count} spans received:\n"
        + string.Join('\n', spans.Select(s => $"  {s.Span.Kind} '{s.Span.Name}' {Key(s.Span.TraceId, s.Span.SpanId)} parent {Convert.ToHexString(s.Span.ParentSpanId.Span)} "
            + $"links {s.Span.Links.Count} [{string.Join(", ", s.Span.Attributes.Select(a => $"{a.Key}={OtlpReceiver.Find([a], a.Key)}"))}]"))
        + $"\nserver log:\n{server.Log}";
}
