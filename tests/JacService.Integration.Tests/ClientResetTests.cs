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
        await using var server = new ServerProcess
        {
            // An interval longer than the test: what the caller-error log writes about the cancellations, it writes once.
            ExtraArgs = ["--Models:Warmup=false", "--CallerErrors:LogIntervalSeconds=3600"],
            CopyFixtures = false,
            PrepareRepository = root =>
                File.Copy(Fixtures.ModelPath(Model), Path.Combine(Directory.CreateDirectory(Path.Combine(root, Model, "1")).FullName, "model.onnx")),
        };
        await server.InitializeAsync();
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
}
