using System.Buffers.Binary;
using System.Net;
using Google.Protobuf;
using JacService.Protos.V1;
using JacService.Testing;
using Xunit.Abstractions;

namespace JacService.Integration.Tests;

/// <summary>
/// Limits:RequestReadTimeoutSeconds: the call memory budget holds what a request's length prefix declares before the
/// message comes, so a message must then arrive in time. Before the limit, a client that declared 60 MB and sent 300
/// bytes a second (over Kestrel's MinRequestBodyDataRate of 240) held 60 MB of the budget for as long as it kept sending,
/// measured for two minutes. Now it is refused RESOURCE_EXHAUSTED at the timeout and lets go; a message that comes in
/// parts but within the timeout is served.
/// </summary>
public class RequestReadTimeoutTests(ITestOutputHelper output)
{
    private const string Model = "mlp_tanh";
    private const int Rows = 40_000; // 40,000 rows of 32 floats: a 5 MB message

    [Fact]
    public async Task AMessageThatComesTooSlowlyIsRefusedAndLetsGoOfTheBudget()
    {
        await using var server = await ServerProcess.Serving(Model, "--Models:Warmup=false", "--Limits:RequestReadTimeoutSeconds=2");
        var reference = Fixtures.Load(Model);
        var request = new PredictRequest { Model = Model, Inputs = { ["x"] = ClientTesting.TiledInputs(reference, Rows)["x"].ToProto() } };
        byte[] message = request.ToByteArray();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };

        // 10 KB a second: 8 minutes for the message.
        using (var response = await http.SendAsync(RawGrpc.Request(server, "Predict", new PacedBody(message, 1000, TimeSpan.FromMilliseconds(100)))))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var status = response.Headers.Concat(response.TrailingHeaders).ToDictionary(h => h.Key, h => h.Value.Single());
            output.WriteLine(status["grpc-message"]);
            Assert.Equal("8", status["grpc-status"]);
            Assert.StartsWith($"the request message of {message.Length:N0} bytes did not arrive within 2 s (Limits:RequestReadTimeoutSeconds): ",
                Uri.UnescapeDataString(status["grpc-message"]));
            Assert.Equal("-1", status["grpc-retry-pushback-ms"]);
        }
        await ServerMetrics.WaitForHeld(server, 0);
        Assert.Equal(1, (await ServerMetrics.Scrape(server))
            .Where(s => s.Name == "jacservice_messages_stalled_total" && s.Labels.GetValueOrDefault("direction") == "request" && s.Labels.GetValueOrDefault("method") == "Predict")
            .Sum(s => s.Value));

        // The same message in ten parts over about half a second is served: a quarter of the limit, as a machine busy with
        // other tests may send the parts late (over 2 s for ten parts 100 ms apart, once, in a suite run with a build beside it).
        using (var response = await http.SendAsync(RawGrpc.Request(server, "Predict", new PacedBody(message, message.Length / 10 + 1, TimeSpan.FromMilliseconds(50)))))
        {
            var body = await response.Content.ReadAsByteArrayAsync();
            var status = response.Headers.Concat(response.TrailingHeaders).ToDictionary(h => h.Key, h => h.Value.Single());
            Assert.True(status.GetValueOrDefault("grpc-status") == "0", $"grpc-status {status.GetValueOrDefault("grpc-status")}: {status.GetValueOrDefault("grpc-message")}");
            var answer = PredictResponse.Parser.ParseFrom(body.AsSpan(5).ToArray());
            Assert.Equal([Rows, reference.Outputs["y"].Shape[1]], answer.Outputs["y"].Shape);
        }

        // The Open Inference Protocol's REST binding holds a body at its Content-Length, and times it the same way: 408.
        var values = string.Join(",", Enumerable.Repeat("0.25", 32 * 1000));
        byte[] json = System.Text.Encoding.UTF8.GetBytes($$"""{"inputs": [{"name": "x", "shape": [1000, 32], "datatype": "FP32", "data": [{{values}}]}]}""");
        // HttpClient stops at the broken pipe of an answer that comes before its body is sent; a client that reads as it
        // sends (curl does) sees the answer, so the headers and a first part go over a plain socket, and the answer is read.
        using (var socket = new System.Net.Sockets.TcpClient())
        {
            await socket.ConnectAsync(IPAddress.Loopback, server.RestPort);
            var stream = socket.GetStream();
            await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes(
                $"POST /v2/models/{Model}/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {json.Length}\r\n\r\n"));
            await stream.WriteAsync(json.AsMemory(0, 1000));
            string answer = await new StreamReader(stream).ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.StartsWith("HTTP/1.1 408 ", answer);
            Assert.Contains("the request body did not arrive within 2 s (Limits:RequestReadTimeoutSeconds)", answer);
        }
        await ServerMetrics.WaitForHeld(server, 0);
        Assert.Equal(1, (await ServerMetrics.Scrape(server))
            .Where(s => s.Name == "jacservice_messages_stalled_total" && s.Labels.GetValueOrDefault("direction") == "request" && s.Labels.GetValueOrDefault("method") == "ModelInfer")
            .Sum(s => s.Value));
        using (var response = await http.PostAsync($"http://127.0.0.1:{server.RestPort}/v2/models/{Model}/infer",
                   new PacedBody(json, json.Length / 10 + 1, TimeSpan.FromMilliseconds(100), grpcPrefix: false)))
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.False(server.HasExited);
    }

    /// <summary>
    /// A gRPC frame sent <paramref name="part"/> bytes at a time, a pause after each; the prefix goes first, alone. Without
    /// <paramref name="grpcPrefix"/>, the bytes alone, under a Content-Length.
    /// </summary>
    private sealed class PacedBody(byte[] message, int part, TimeSpan pause, bool grpcPrefix = true) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            if (grpcPrefix)
            {
                var prefix = new byte[5];
                BinaryPrimitives.WriteUInt32BigEndian(prefix.AsSpan(1), (uint)message.Length);
                await stream.WriteAsync(prefix);
                await stream.FlushAsync();
            }
            for (int sent = 0; sent < message.Length; sent += part)
            {
                await Task.Delay(pause);
                await stream.WriteAsync(message.AsMemory(sent, Math.Min(part, message.Length - sent)));
                await stream.FlushAsync();
            }
        }

        protected override bool TryComputeLength(out long length)
        {
            length = grpcPrefix ? -1 : message.Length;
            return !grpcPrefix;
        }
    }
}
