using System.Buffers.Binary;
using System.Net;
using Google.Protobuf;
using Grpc.Core;
using JacService.Protos.V1;
using JacService.Testing;
using Xunit.Abstractions;
using static JacService.Integration.Tests.ClientTesting;

namespace JacService.Integration.Tests;

/// <summary>
/// Limits:MaxInFlightMiB against the real server: a call whose message would take the bytes held past the budget is
/// refused RESOURCE_EXHAUSTED from its length prefix alone, one whose result or Predict outputs would before it is
/// queued, calls of up to 1 MiB go on even past the budget, and once the held call has answered the refused one is
/// served. The held call is one whose client sent the prefix and a first part of its body and then waits, as a slow or
/// hostile sender of a large message would.
/// </summary>
public class CallMemoryTests(ITestOutputHelper output)
{
    private const string Model = "mlp_tanh";
    private const string Decoder = "conv_decoder";
    private const int Rows = 40_000; // 40,000 rows of 32 floats: a 5 MB message

    [Fact]
    public async Task ACallOverTheBudgetIsRefusedUnreadWhileSmallCallsGoOn()
    {
        await using var server = new ServerProcess { ExtraArgs = ["--Limits:MaxRequestMiB=8", "--Limits:MaxResponseMiB=8", "--Limits:MaxInFlightMiB=8", "--Models:Warmup=false"] };
        await server.InitializeAsync();
        var reference = Fixtures.Load(Model);
        var large = LargeRequest(reference);
        byte[] message = large.ToByteArray();
        Assert.InRange(message.Length, 5_000_000, 6 << 20);

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
        var release = new TaskCompletionSource();
        var sent = new TaskCompletionSource();
        var held = http.SendAsync(RawGrpc.Request(server, "Predict", new HeldBody(message, sent, release.Task)), HttpCompletionOption.ResponseHeadersRead);
        await sent.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await ServerMetrics.WaitForHeld(server, message.Length);

        // 4.9 MiB held and 4.9 MiB more would pass 8 MiB: refused, whatever the queue and the model could take.
        var refused = await Assert.ThrowsAsync<RpcException>(() => server.Client.PredictAsync(large).ResponseAsync);
        Assert.Equal(StatusCode.ResourceExhausted, refused.StatusCode);
        Assert.StartsWith("the server holds 4.9 MiB for calls in progress, and this call's request message of 4.9 MiB", refused.Status.Detail);
        Assert.Contains("would pass Limits:MaxInFlightMiB (8.0 MiB); retry when calls in progress have answered", refused.Status.Detail);

        // A result is held too, sized before anything is queued: 2,000 rows of mlp_tanh's Jacobians take 4.0 MiB, which
        // would pass the budget beside the held call though its request message (256 KB) does not.
        var jacobians = new BatchJacobianRequest { Model = Model, Inputs = { ["x"] = Rows2000(large) } };
        var resultRefused = await Assert.ThrowsAsync<RpcException>(() => server.Client.BatchJacobianAsync(jacobians).ResponseAsync);
        Assert.Equal(StatusCode.ResourceExhausted, resultRefused.StatusCode);
        Assert.Contains("and this call's result of 4.0 MiB would pass Limits:MaxInFlightMiB (8.0 MiB)", resultRefused.Status.Detail);

        // So are Predict's outputs: 7,000 rows of conv_decoder (32 floats in a row, 128 out) send 0.9 MB, which is taken,
        // and would answer 3.4 MiB.
        var decoder = Fixtures.Load(Decoder);
        var decode = new PredictRequest { Model = Decoder };
        foreach (var (name, t) in TiledInputs(decoder, 7000)) decode.Inputs[name] = t.ToProto();
        var outputsRefused = await Assert.ThrowsAsync<RpcException>(() => server.Client.PredictAsync(decode).ResponseAsync);
        Assert.Equal(StatusCode.ResourceExhausted, outputsRefused.StatusCode);
        Assert.Contains("and this call's outputs of 3.4 MiB would pass Limits:MaxInFlightMiB (8.0 MiB)", outputsRefused.Status.Detail);

        // A small call is served beside the held one.
        var small = await server.Client.PredictAsync(new PredictRequest { Model = Model, Inputs = { ["x"] = ServingTests.ToProto(reference.Inputs["x"]) } });
        Compare.Close(reference.Outputs["y"], small.Outputs["y"].Shape.ToArray(), small.Outputs["y"].Data, 1e-4, "beside the held call");

        // A stream's messages are held one by one as they are read: a 4.9 MB message (of the wrong shape, which the
        // budget refuses before anything looks at it) is answered RESOURCE_EXHAUSTED, and a sample after it is served.
        var wide = new JacobianRequest { Model = Model, Inputs = { ["x"] = large.Inputs["x"] } };
        var sample = new JacobianRequest { Model = Model, Inputs = { ["x"] = ServingTests.ToProto(reference.Inputs["x"].Sample(0)) } };
        var answers = await Stream(server, wide, sample);
        Assert.Equal((int)StatusCode.ResourceExhausted, answers[0].Code);
        Assert.Contains("would pass Limits:MaxInFlightMiB (8.0 MiB)", answers[0].Message);
        Assert.Equal(0, answers[1].Code);

        // JacService's own client retries RESOURCE_EXHAUSTED: its call, refused while the budget is held, is served once
        // the held call has answered. Its retries wait a random time of up to 2 s, then 4 s, so the release comes first.
        // (The exporter caches a scrape briefly, so the counts are waited for.)
        await WaitForRefusals(server, 4);
        var client = ClientFor(server, o => o.InitialBackoff = TimeSpan.FromSeconds(2));
        var retried = client.PredictAsync(Model, new Dictionary<string, JacService.Client.FloatTensor> { ["x"] = JacService.Client.FloatTensor.FromProto(large.Inputs["x"]) });
        await WaitForRefusals(server, 5);
        Assert.False(retried.IsCompleted, "the client's call was refused and waits to try again");

        // The held call finishes its body and is answered; then the budget is free and the large calls are served.
        release.SetResult();
        using (var response = await held)
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            await response.Content.ReadAsByteArrayAsync();
            Assert.Equal("0", response.TrailingHeaders.GetValues("grpc-status").Single());
        }
        Assert.Equal([Rows, reference.Outputs["y"].Shape[1]], (await retried).Outputs["y"].Shape);
        await ServerMetrics.WaitForHeld(server, 0);
        var served = await server.Client.PredictAsync(large);
        Assert.Equal([Rows, reference.Outputs["y"].Shape[1]], served.Outputs["y"].Shape);
        var decoded = await server.Client.PredictAsync(decode);
        foreach (var (name, expected) in decoder.Outputs)
            CloseTiled(expected, JacService.Client.FloatTensor.FromProto(decoded.Outputs[name]), $"{Decoder}.{name}");
        var jacobiansServed = await server.Client.BatchJacobianAsync(jacobians);
        Assert.Equal([2000, reference.Outputs["y"].Shape[1], reference.Inputs["x"].Shape[1]], jacobiansServed.Jacobians["y"].Shape);
        // With room, the stream's wide message reaches validation.
        Assert.Equal((int)StatusCode.InvalidArgument, (await Stream(server, wide))[0].Code);

        // The client's call was refused once, or more if a retry came before the release.
        Assert.InRange(await Refusals(server), 5, 8);
        output.WriteLine(string.Join('\n', server.Log.Split('\n').Where(l => l.Contains("MaxInFlightMiB", StringComparison.Ordinal))));
        Assert.False(server.HasExited);
    }

    private static PredictRequest LargeRequest(Reference reference)
    {
        var x = reference.Inputs["x"];
        int width = (int)x.Shape[1];
        var data = new float[Rows * width];
        for (int i = 0; i < data.Length; i++) data[i] = (float)x.Data[i % x.Data.Length];
        var tensor = new Tensor { Shape = { Rows, width } };
        tensor.Data.AddRange(data);
        return new PredictRequest { Model = Model, Inputs = { ["x"] = tensor } };
    }

    private static Tensor Rows2000(PredictRequest large)
    {
        var x = large.Inputs["x"];
        var rows = new Tensor { Shape = { 2000, x.Shape[1] } };
        rows.Data.AddRange(x.Data.Take(2000 * (int)x.Shape[1]));
        return rows;
    }

    private static async Task<List<JacobianStreamResponse>> Stream(ServerProcess server, params JacobianRequest[] requests)
    {
        using var call = server.Client.JacobianStream(deadline: DateTime.UtcNow.AddSeconds(30));
        foreach (var r in requests) await call.RequestStream.WriteAsync(r);
        await call.RequestStream.CompleteAsync();
        var answers = new List<JacobianStreamResponse>();
        await foreach (var a in call.ResponseStream.ReadAllAsync()) answers.Add(a);
        return answers;
    }

    private static async Task<double> Refusals(ServerProcess server) =>
        (await ServerMetrics.Scrape(server)).Where(s => s.Name == "jacservice_call_memory_refusals_total").Sum(s => s.Value);

    private static async Task WaitForRefusals(ServerProcess server, double atLeast)
    {
        double last = 0;
        for (var deadline = DateTime.UtcNow.AddSeconds(20); DateTime.UtcNow < deadline; await Task.Delay(50))
            if ((last = await Refusals(server)) >= atLeast) return;
        Assert.Fail($"the server counted {last} refusals; expected {atLeast} at least");
    }

    /// <summary>A gRPC frame whose prefix and first 64 KiB go out at once, and the rest only when released.</summary>
    private sealed class HeldBody(byte[] message, TaskCompletionSource sent, Task release) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            var prefix = new byte[5];
            BinaryPrimitives.WriteUInt32BigEndian(prefix.AsSpan(1), (uint)message.Length);
            await stream.WriteAsync(prefix);
            await stream.WriteAsync(message.AsMemory(0, 64 << 10));
            await stream.FlushAsync();
            sent.SetResult();
            await release;
            await stream.WriteAsync(message.AsMemory(64 << 10));
        }

        protected override bool TryComputeLength(out long length)
        {
            length = -1;
            return false;
        }
    }
}
