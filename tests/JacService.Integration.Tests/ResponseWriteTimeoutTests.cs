using System.Net;
using Grpc.Core;
using Grpc.Net.Client;
using JacService.Protos.V1;
using JacService.Testing;
using Xunit.Abstractions;
using static JacService.Integration.Tests.ClientTesting;

namespace JacService.Integration.Tests;

/// <summary>
/// Limits:ResponseWriteTimeoutSeconds against clients that stop reading. HTTP/2 flow control holds the server's write
/// until the client reads, and Kestrel does not time a stream whose own window is full: before the limit, a
/// StreamBatchJacobian whose client read one chunk and then nothing held its chunk's share of the call memory budget for
/// as long as the client kept the connection. Now the stream is reset after the timeout, its memory is let go, and the
/// client reads RESOURCE_EXHAUSTED. A client that reads slowly but steadily is not reset.
/// </summary>
public class ResponseWriteTimeoutTests(ITestOutputHelper output)
{
    private const string Model = "mlp_tanh";
    private const int TimeoutSeconds = 2;

    [Fact]
    public async Task ACallWhoseClientStopsReadingIsResetAndLetsGoOfItsMemory()
    {
        await using var server = await ServerProcess.Serving(Model,
            "--Models:Warmup=false", $"--Limits:ResponseWriteTimeoutSeconds={TimeoutSeconds}", "--CallerErrors:LogIntervalSeconds=3600");
        var reference = Fixtures.Load(Model);
        int linesBefore = server.Log.Split('\n').Length;
        // A client whose stream window stays at HTTP/2's initial 64 KiB while its application reads nothing.
        using var channel = GrpcChannel.ForAddress($"http://{server.Target}", new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler { InitialHttp2StreamWindowSize = 65535 },
            MaxReceiveMessageSize = null,
        });
        var client = new JacobianService.JacobianServiceClient(channel);

        // A StreamBatchJacobian of 20 chunks, each over a megabyte, read as far as its first chunk.
        var batch = new BatchJacobianRequest { Model = Model, MaxRowsPerChunk = 1000 };
        foreach (var (name, t) in TiledInputs(reference, 20_000)) batch.Inputs[name] = t.ToProto();
        using (var call = client.StreamBatchJacobian(batch))
        {
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
            await WaitForStalled(server, "StreamBatchJacobian", 1);
            await ServerMetrics.WaitForHeld(server, 0);
            var reset = await Assert.ThrowsAsync<RpcException>(async () => { while (await call.ResponseStream.MoveNext(CancellationToken.None)) { } });
            output.WriteLine($"StreamBatchJacobian: {reset.Status}");
            Assert.Equal(StatusCode.ResourceExhausted, reset.StatusCode);
        }

        // A unary BatchJacobian whose 4 MB answer the client does not read.
        var jacobians = new BatchJacobianRequest { Model = Model };
        foreach (var (name, t) in TiledInputs(reference, 2000)) jacobians.Inputs[name] = t.ToProto();
        using (var http = new HttpClient(new SocketsHttpHandler { InitialHttp2StreamWindowSize = 65535 }))
        using (var response = await http.SendAsync(RawGrpc.Request(server, "BatchJacobian", RawGrpc.Frame(jacobians)), HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            await WaitForStalled(server, "BatchJacobian", 1);
            await ServerMetrics.WaitForHeld(server, 0);
            var reset = await Assert.ThrowsAnyAsync<HttpRequestException>(() => response.Content.ReadAsByteArrayAsync());
            output.WriteLine($"BatchJacobian: {reset.InnerException?.Message}");
            Assert.Equal(0xb, Assert.IsType<HttpProtocolException>(reset.InnerException).ErrorCode);
        }

        // A JacobianStream whose answers the client does not read: its window of requests fills, then its writes stall.
        var sample = new JacobianRequest { Model = Model };
        foreach (var (name, t) in SampleInputs(reference, 0)) sample.Inputs[name] = t.ToProto();
        using (var call = client.JacobianStream())
        {
            for (int i = 0; i < 200; i++)
                if (!await TryWrite(call.RequestStream, sample)) break;
            await WaitForStalled(server, "JacobianStream", 1);
            await ServerMetrics.WaitForHeld(server, 0);
            var reset = await Assert.ThrowsAsync<RpcException>(async () => { while (await call.ResponseStream.MoveNext(CancellationToken.None)) { } });
            Assert.Equal(StatusCode.ResourceExhausted, reset.StatusCode);
        }

        // A client that reads a chunk every half second, slower than the server sends but never stopped, gets all of them.
        using (var call = client.StreamBatchJacobian(batch))
        {
            long rows = 0;
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
                rows += call.ResponseStream.Current.RowCount;
                await Task.Delay(TimeSpan.FromSeconds(TimeoutSeconds / 4.0));
            }
            Assert.Equal(20_000, rows);
        }
        Assert.Equal(3, await Stalled(server, null));

        // Still serving; each reset was one caller-error line, none a cancellation, an error or a stack trace.
        Assert.NotEmpty((await server.Client.PredictAsync(new PredictRequest { Model = Model, Inputs = { ["x"] = ServingTests.ToProto(reference.Inputs["x"]) } })).Outputs);
        var lines = server.Log.Split('\n').Skip(linesBefore).ToList();
        output.WriteLine(string.Join('\n', lines));
        Assert.Contains(lines, l => l.Contains($"a response message waited {TimeoutSeconds} s for the client to read it", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.Contains("Caller error Cancelled", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.StartsWith("fail:", StringComparison.Ordinal) || l.TrimStart().StartsWith("at ", StringComparison.Ordinal));
        Assert.False(server.HasExited);
    }

    // Writes stop being taken once the server stops reading, and fail once it resets the call.
    private static async Task<bool> TryWrite(IClientStreamWriter<JacobianRequest> requests, JacobianRequest request)
    {
        var write = requests.WriteAsync(request);
        if (await Task.WhenAny(write, Task.Delay(TimeSpan.FromSeconds(1))) != write) return false;
        try
        {
            await write;
            return true;
        }
        catch (RpcException)
        {
            return false;
        }
    }

    private static async Task<double> Stalled(ServerProcess server, string? method) =>
        (await ServerMetrics.Scrape(server))
            .Where(s => s.Name == "jacservice_messages_stalled_total" && s.Labels.GetValueOrDefault("direction") == "response"
                && (method is null || s.Labels.GetValueOrDefault("method") == method))
            .Sum(s => s.Value);

    private static async Task WaitForStalled(ServerProcess server, string method, double count)
    {
        double last = 0;
        for (var deadline = DateTime.UtcNow.AddSeconds(30); DateTime.UtcNow < deadline; await Task.Delay(100))
            if ((last = await Stalled(server, method)) >= count) return;
        Assert.Fail($"the server counted {last} stalled {method} responses; expected {count}");
    }
}
