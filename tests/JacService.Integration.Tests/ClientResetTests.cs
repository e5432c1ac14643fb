using Google.Protobuf;
using Grpc.Core;
using JacService.Protos.V1;
using JacService.Testing;
using Xunit.Abstractions;
using static JacService.Integration.Tests.ClientTesting;

namespace JacService.Integration.Tests;

/// <summary>
/// A client that cancels its streaming calls (HTTP/2 RST_STREAM, what disposing a call or closing a channel sends) has
/// left, which is no failure of the server's: no error line and no stack trace per call. Before, every JacobianStream
/// a client reset was logged as an internal error with its stack trace: 1,200 of them for one client that opened 1,200
/// idle streams and closed them.
/// </summary>
public class ClientResetTests(ITestOutputHelper output)
{
    private const string Model = "mlp_tanh";
    private static readonly Marshaller<byte[]> Raw = Marshallers.Create(bytes => bytes, bytes => bytes);

    [Fact]
    public async Task StreamsTheClientResetsLeaveNoErrorInTheLog()
    {
        // An interval longer than the test: what the caller-error log writes about the cancellations, it writes once.
        await using var server = await ServerProcess.Serving(Model, "--Models:Warmup=false", "--CallerErrors:LogIntervalSeconds=3600");
        var reference = Fixtures.Load(Model);
        var invoker = server.Channel.CreateCallInvoker();
        var request = new JacobianRequest { Model = Model };
        foreach (var (name, t) in SampleInputs(reference, 0)) request.Inputs[name] = t.ToProto();
        int linesBefore = server.Log.Split('\n').Length;

        // JacobianStreams: half idle, half after one answer, all reset by the client.
        var stream = new Method<byte[], byte[]>(MethodType.DuplexStreaming, "jacservice.v1.JacobianService", "JacobianStream", Raw, Raw);
        for (int i = 0; i < 40; i++)
        {
            using var call = invoker.AsyncDuplexStreamingCall(stream, null, new CallOptions());
            if (i % 2 == 0) continue;
            await call.RequestStream.WriteAsync(request.ToByteArray());
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
            Assert.Equal(0, JacobianStreamResponse.Parser.ParseFrom(call.ResponseStream.Current).Code);
        }

        // StreamBatchJacobians left after their first chunk.
        var batch = new BatchJacobianRequest { Model = Model };
        foreach (var (name, t) in TiledInputs(reference, 4096)) batch.Inputs[name] = t.ToProto();
        for (int i = 0; i < 10; i++)
        {
            using var call = server.Client.StreamBatchJacobian(batch);
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        }

        // Still serving; the server has seen every reset once a call after them is answered, and its log has had time to flush.
        Assert.NotEmpty((await server.Client.PredictAsync(new PredictRequest { Model = Model, Inputs = { ["x"] = ServingTests.ToProto(reference.Inputs["x"]) } })).Outputs);
        await Task.Delay(TimeSpan.FromSeconds(1));
        var lines = server.Log.Split('\n').Skip(linesBefore).ToList();
        output.WriteLine(string.Join('\n', lines));
        Assert.DoesNotContain(lines, l => l.StartsWith("fail:", StringComparison.Ordinal) || l.TrimStart().StartsWith("at ", StringComparison.Ordinal));
        Assert.False(server.HasExited);
    }

    /// <summary>
    /// Unary calls cancelled a moment after they start, many at once (a client with a tight timeout, or one resetting
    /// calls on purpose). Two kinds of error lines came from them, each with its stack trace: grpc-dotnet's, for a reset
    /// that reached the read of the call's message, and INTERNAL for calls whose batch waited on AUTO's timing in a batch
    /// whose callers had all gone, which stopped it (SharedEntries): 119 of 46,000 such calls, before.
    /// </summary>
    [Fact]
    public async Task UnaryCallsCancelledAsTheyStartLeaveNoErrorInTheLog()
    {
        await using var server = await ServerProcess.Serving(Model, "--Models:Warmup=false", "--CallerErrors:LogIntervalSeconds=3600");
        var reference = Fixtures.Load(Model);
        var request = new JacobianRequest { Model = Model };
        foreach (var (name, t) in SampleInputs(reference, 0)) request.Inputs[name] = t.ToProto();
        int linesBefore = server.Log.Split('\n').Length;

        var end = DateTime.UtcNow.AddSeconds(8);
        int calls = 0;
        await Task.WhenAll(Enumerable.Range(0, 16).Select(_ => Task.Run(async () =>
        {
            while (DateTime.UtcNow < end)
            {
                using var cancel = new CancellationTokenSource();
                var call = server.Client.JacobianAsync(request, cancellationToken: cancel.Token);
                await Task.Delay(TimeSpan.FromMilliseconds(Random.Shared.Next(0, 4)));
                await cancel.CancelAsync();
                try
                {
                    await call;
                }
                // CANCELLED, or now and then INTERNAL ("Error starting gRPC call. ObjectDisposedException") where the cancellation
                // races the .NET client's own start of the call: the client's answer, not the server's.
                catch (RpcException)
                {
                }
                Interlocked.Increment(ref calls);
            }
        })));

        var answer = await server.Client.JacobianAsync(request);
        Compare.Close(reference.Jacobians["x"]["y"].Sample(0), answer.Jacobians["y"].Shape.ToArray(), answer.Jacobians["y"].Data, 1e-4, "after the cancelled calls");
        await Task.Delay(TimeSpan.FromSeconds(1));
        var lines = server.Log.Split('\n').Skip(linesBefore).ToList();
        output.WriteLine($"{calls} calls cancelled");
        output.WriteLine(string.Join('\n', lines.Take(60)));
        Assert.DoesNotContain(lines, l => l.StartsWith("fail:", StringComparison.Ordinal) || l.TrimStart().StartsWith("at ", StringComparison.Ordinal));
        Assert.False(server.HasExited);
    }
}
