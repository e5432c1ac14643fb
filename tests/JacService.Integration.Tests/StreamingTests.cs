using System.Diagnostics;
using Grpc.Core;
using JacService.Client;
using JacService.Protos.V1;
using JacService.Testing;
using static JacService.Integration.Tests.ClientTesting;

namespace JacService.Integration.Tests;

/// <summary>
/// StreamBatchJacobian: chunks reassembled by the client equal the unary answer, a batch over the message limit
/// works only through the stream, and deadlines and errors behave as for the unary call.
/// </summary>
[Collection(ServerCollection.Name)]
public class StreamingTests(ServerProcess server, LimitedServer limited) : IClassFixture<LimitedServer>
{
    private readonly JacServiceClient _client = ClientFor(server);

    /// <summary>
    /// Bit-for-bit: the batcher cuts the unary request into passes of MaxBatchSize (64) rows, and chunks of 64 rows
    /// are passes of the same rows, run by the same engine with one intra-op thread. The same shapes and the same
    /// data take the same kernels in the same order, so every float comes out identical, including the short last
    /// pass (150 = 64 + 64 + 22). The tests in this collection run one at a time, so no other caller's rows join a pass.
    /// </summary>
    [Theory]
    [InlineData("mlp_tanh", 64)]
    [InlineData("relu_classifier", 64)]
    [InlineData("two_outputs", 0)]
    public async Task StreamedEqualsUnaryBitForBit(string name, int maxRowsPerChunk)
    {
        var reference = Fixtures.Load(name);
        var inputs = TiledInputs(reference, 150);
        var unary = await _client.BatchJacobianAsync(name, inputs);
        var streamed = await _client.StreamBatchJacobianAsync(name, inputs, maxRowsPerChunk: maxRowsPerChunk);

        Assert.Equal((unary.Model, unary.Version), (streamed.Model, streamed.Version));
        Assert.Equal(unary.Outputs.Keys.Order(), streamed.Outputs.Keys.Order());
        Assert.Equal(unary.Jacobians.Keys.Order(), streamed.Jacobians.Keys.Order());
        foreach (var (output, t) in unary.Outputs) Assert.True(t.ContentEquals(streamed.Outputs[output]), $"{name}.{output} differs");
        foreach (var (output, t) in unary.Jacobians) Assert.True(t.ContentEquals(streamed.Jacobians[output]), $"{name} d{output} differs");
        foreach (var (output, expected) in reference.Jacobians.Values.Single()) CloseTiled(expected, streamed.Jacobians[output], $"{name} d{output}");
    }

    [Fact]
    public async Task ChunksAreConsecutiveRowsOfTheRequestedSize()
    {
        var reference = Fixtures.Load("mlp_tanh");
        var request = new BatchJacobianRequest { Model = "mlp_tanh", MaxRowsPerChunk = 7 };
        foreach (var (input, t) in TiledInputs(reference, 30)) request.Inputs[input] = t.ToProto();
        using var call = server.Client.StreamBatchJacobian(request, deadline: DateTime.UtcNow.AddSeconds(30));
        var chunks = new List<BatchJacobianChunk>();
        while (await call.ResponseStream.MoveNext(CancellationToken.None)) chunks.Add(call.ResponseStream.Current);

        Assert.Equal([0, 7, 14, 21, 28], chunks.Select(c => c.RowOffset));
        Assert.Equal([7, 7, 7, 7, 2], chunks.Select(c => c.RowCount));
        Assert.All(chunks, c => Assert.Equal(30, c.TotalRows));
        Assert.All(chunks, c => Assert.Equal([c.RowCount, 16, 32], c.Jacobians["y"].Shape));

        // Other chunk sizes make passes of other shapes: equal to the reference, not necessarily bit for bit.
        var streamed = await _client.StreamBatchJacobianAsync("mlp_tanh", TiledInputs(reference, 30), maxRowsPerChunk: 7);
        CloseTiled(reference.Jacobians["x"]["y"], streamed.Jacobians["y"], "dy/dx");
        CloseTiled(reference.Outputs["y"], streamed.Outputs["y"], "y");
    }

    [Fact]
    public async Task ABatchOverTheMessageLimitWorksOnlyThroughTheStream()
    {
        // 640 samples of mlp_tanh: 640 x (16 + 16 x 32) floats = 1.35 MB of result, over the server's 1 MiB limit. The
        // client also receives at most 1 MiB per message: each chunk fits, the whole would not.
        var reference = Fixtures.Load("mlp_tanh");
        var inputs = TiledInputs(reference, 640);
        var client = ClientFor(limited.Server, o => o.MaxMessageMiB = LimitedServer.MaxResponseMiB);

        var unary = await Assert.ThrowsAsync<RpcException>(() => client.BatchJacobianAsync("mlp_tanh", inputs));
        Assert.Equal(StatusCode.ResourceExhausted, unary.StatusCode);
        Assert.Contains("over the limit of 1,048,576", unary.Status.Detail);

        var streamed = await client.StreamBatchJacobianAsync("mlp_tanh", inputs);
        Assert.Equal([640, 16, 32], streamed.Jacobians["y"].Shape);
        CloseTiled(reference.Jacobians["x"]["y"], streamed.Jacobians["y"], "dy/dx");
        CloseTiled(reference.Outputs["y"], streamed.Outputs["y"], "y");

        var request = new BatchJacobianRequest { Model = "mlp_tanh" };
        foreach (var (input, t) in inputs) request.Inputs[input] = t.ToProto();
        using var call = limited.Server.Client.StreamBatchJacobian(request, deadline: DateTime.UtcNow.AddSeconds(60));
        var sizes = new List<int>();
        while (await call.ResponseStream.MoveNext(CancellationToken.None)) sizes.Add(call.ResponseStream.Current.CalculateSize());
        Assert.True(sizes.Count >= 2, $"{sizes.Count} chunks");
        Assert.All(sizes, size => Assert.True(size < LimitedServer.MaxResponseMiB << 20, $"a chunk of {size} bytes"));
    }

    [Fact]
    public async Task ADeadlinePassingInTheQueueIsDeadlineExceeded()
    {
        var reference = Fixtures.Load("mlp_tanh");
        var client = ClientFor(limited.Server);
        var clock = Stopwatch.StartNew();
        var unary = await Assert.ThrowsAsync<RpcException>(() =>
            client.BatchJacobianAsync("slow_queue", Inputs(reference), timeout: TimeSpan.FromMilliseconds(500)));
        Assert.Equal(StatusCode.DeadlineExceeded, unary.StatusCode);
        var streamed = await Assert.ThrowsAsync<RpcException>(() =>
            client.StreamBatchJacobianAsync("slow_queue", Inputs(reference), timeout: TimeSpan.FromMilliseconds(500)));
        Assert.Equal(StatusCode.DeadlineExceeded, streamed.StatusCode);
        // Well before the 10 s batching delay would have let either run.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(8), $"took {clock.Elapsed}");

        // The same model answers when the deadline leaves room for the delay.
        var answered = await client.JacobianAsync("slow_queue", SampleInputs(reference, 0), timeout: TimeSpan.FromSeconds(30));
        Close(reference.Jacobians["x"]["y"].Sample(0), answered.Jacobians["y"], "dy/dx");
    }

    /// <summary>A JacobianStream's window: of ten requests sent, only Limits:MaxStreamRequestsInFlight wait in the queue.</summary>
    [Fact]
    public async Task AJacobianStreamQueuesAtMostItsWindow()
    {
        var reference = Fixtures.Load("mlp_tanh");
        var request = new JacobianRequest { Model = "slow_queue" };
        foreach (var (input, t) in SampleInputs(reference, 0)) request.Inputs[input] = t.ToProto();
        var client = limited.Server.Client;
        async Task<long> Queued() => (await client.GetModelAsync(new GetModelRequest { Model = "slow_queue" })).Batching.QueuedRows;

        using (var call = client.JacobianStream(deadline: DateTime.UtcNow.AddSeconds(60)))
        {
            for (int i = 0; i < 10; i++) await call.RequestStream.WriteAsync(request);
            await Waiting.Until(async () => await Queued() >= LimitedServer.StreamWindow, $"{LimitedServer.StreamWindow} rows queued", limited.Server, 8);
            await Task.Delay(500);
            Assert.Equal(LimitedServer.StreamWindow, await Queued());
        }
        // Hung up: the queued requests are dropped, not computed 10 s later.
        await Waiting.Until(async () => await Queued() == 0, "the queue emptied once the call ended", limited.Server, 8);
    }

    [Fact]
    public async Task ACancelledStreamStopsComputing()
    {
        // 4000 one-row chunks: a few seconds of passes, of which the caller reads three and then hangs up.
        const int rows = 4000;
        var reference = Fixtures.Load("mlp_tanh");
        var request = new BatchJacobianRequest { Model = "mlp_tanh", MaxRowsPerChunk = 1 };
        foreach (var (input, t) in TiledInputs(reference, rows)) request.Inputs[input] = t.ToProto();
        long before = await RowsComputed("mlp_tanh");

        using (var cancel = new CancellationTokenSource())
        using (var call = server.Client.StreamBatchJacobian(request, deadline: DateTime.UtcNow.AddSeconds(60), cancellationToken: cancel.Token))
        {
            for (int i = 0; i < 3; i++) Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
            cancel.Cancel();
        }

        // The server hears of it at its next pass or write; after that no further pass may run. Poll until the count
        // holds still for half a second: a server that ignored the cancellation would run on to all 4000 rows.
        long settled = await RowsComputed("mlp_tanh");
        for (var giveUp = DateTime.UtcNow.AddSeconds(20); DateTime.UtcNow < giveUp;)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(500));
            long now = await RowsComputed("mlp_tanh");
            if (now == settled) break;
            settled = now;
        }
        Assert.InRange(settled - before, 3, rows / 2);
    }

    private async Task<long> RowsComputed(string model) =>
        (await server.Client.GetModelAsync(new GetModelRequest { Model = model })).Batching.Rows;

    [Fact]
    public async Task ErrorsAreTheUnaryCallsErrors()
    {
        var reference = Fixtures.Load("pinn");
        foreach (var (model, wrt, code) in new[] { ("no_such_model", "", StatusCode.NotFound), ("pinn", "nope", StatusCode.InvalidArgument),
                     ("garbage", "", StatusCode.FailedPrecondition) })
        {
            var unary = await Assert.ThrowsAsync<RpcException>(() => _client.BatchJacobianAsync(model, Inputs(reference), wrt: wrt));
            var streamed = await Assert.ThrowsAsync<RpcException>(() => _client.StreamBatchJacobianAsync(model, Inputs(reference), wrt: wrt));
            Assert.Equal(code, unary.StatusCode);
            Assert.Equal((unary.StatusCode, unary.Status.Detail), (streamed.StatusCode, streamed.Status.Detail));
        }
    }
}
