using Grpc.Core;
using JacService.Protos.V1;
using JacService.Testing;
using Xunit.Abstractions;
using static JacService.Integration.Tests.ClientTesting;

namespace JacService.Integration.Tests;

/// <summary>
/// Limits:MaxRequestMiB is the size a request may have, whatever Kestrel's own default cap on a request body (30,000,000
/// bytes): a Predict of 46 MB under a 48 MiB limit is answered, one of 51 MB is RESOURCE_EXHAUSTED naming both sizes, and
/// neither leaves an error or a stack trace in the log. Before Kestrel's cap followed the setting, every unary request
/// between 30,000,000 bytes and the limit (a batch of 64 ImageNet images, 38.5 MB) ended UNKNOWN.
/// </summary>
public class RequestSizeTests(ITestOutputHelper output)
{
    private const string Model = "wide_classifier";

    [Fact]
    public async Task ARequestUpToTheLimitIsServedAndOneOverItIsResourceExhausted()
    {
        // 90,000 rows, over the queue's default capacity (8192 rows): a request that size is taken when nothing waits.
        await using var server = await ServerWithRequestLimit(48);
        var reference = Fixtures.Load(Model);
        int linesBefore = server.Log.Split('\n').Length;

        // 90,000 rows of 128 floats: 46,080,000 bytes of floats, over Kestrel's 30,000,000 and under 48 MiB (50,331,648).
        var within = TiledInputs(reference, 90_000);
        var request = new PredictRequest { Model = Model };
        foreach (var (name, t) in within) request.Inputs[name] = t.ToProto();
        Assert.InRange(request.CalculateSize(), 30_000_001, 48 << 20);
        var reply = await server.Client.PredictAsync(request);
        foreach (var (output, expected) in reference.Outputs)
            CloseTiled(expected, JacService.Client.FloatTensor.FromProto(reply.Outputs[output]), $"{Model}.{output}");

        var over = TiledInputs(reference, 100_000);
        var tooLarge = new PredictRequest { Model = Model };
        foreach (var (name, t) in over) tooLarge.Inputs[name] = t.ToProto();
        Assert.True(tooLarge.CalculateSize() > 48 << 20);
        var refused = await Assert.ThrowsAsync<RpcException>(() => server.Client.PredictAsync(tooLarge).ResponseAsync);
        Assert.Equal(StatusCode.ResourceExhausted, refused.StatusCode);
        Assert.Equal($"the request message of {tooLarge.CalculateSize():N0} bytes is over Limits:MaxRequestMiB (50,331,648 bytes); send fewer samples per request",
            refused.Status.Detail);
        // Refused from its length prefix, its body unread, and marked as too large for any retry to cure.
        Assert.Equal("-1", refused.Trailers.GetValue("grpc-retry-pushback-ms"));

        // Still serving, and nothing about either call logged as an error.
        Assert.NotEmpty((await server.Client.PredictAsync(new PredictRequest { Model = Model, Inputs = { ["x"] = ServingTests.ToProto(reference.Inputs["x"]) } })).Outputs);
        var lines = server.Log.Split('\n').Skip(linesBefore).ToList();
        output.WriteLine(string.Join('\n', lines));
        Assert.DoesNotContain(lines, l => l.StartsWith("fail:", StringComparison.Ordinal) || l.TrimStart().StartsWith("at ", StringComparison.Ordinal));
    }

    /// <summary>
    /// A compressed message's prefix says nothing of what it inflates to, so grpc-dotnet refuses one that inflates past the
    /// limit itself; its answer carries the same "do not retry" mark as the refusals that read the length prefix.
    /// </summary>
    [Fact]
    public async Task ACompressedRequestThatInflatesPastTheLimitIsRefusedAndMarkedFinal()
    {
        await using var server = await ServerWithRequestLimit(1);
        var reference = Fixtures.Load(Model);
        // 4,000 rows of 128 zeros: 2 MB of floats, which gzip makes a few kilobytes.
        var zeros = new PredictRequest { Model = Model };
        zeros.Inputs["x"] = new JacService.Client.FloatTensor(new float[4000 * 128], 4000, 128).ToProto();
        Assert.True(zeros.CalculateSize() > 1 << 20);
        var gzip = new Metadata { { "grpc-internal-encoding-request", "gzip" } };

        var refused = await Assert.ThrowsAsync<RpcException>(() => server.Client.PredictAsync(zeros, gzip).ResponseAsync);

        Assert.Equal(StatusCode.ResourceExhausted, refused.StatusCode);
        Assert.StartsWith("Received message exceeds the maximum configured message size", refused.Status.Detail);
        Assert.Equal("-1", refused.Trailers.GetValue("grpc-retry-pushback-ms"));
        // A compressed request within the limit is served.
        var small = new PredictRequest { Model = Model, Inputs = { ["x"] = ServingTests.ToProto(reference.Inputs["x"]) } };
        Assert.NotEmpty((await server.Client.PredictAsync(small, gzip)).Outputs);
    }

    /// <summary>
    /// The Open Inference Protocol's REST binding under the same limit: a body whose Content-Length is over it is 413
    /// before it is read; one sent in chunks is 413 when it passes the limit; one within it is served. The requests are
    /// written on a plain socket, whose answer is read even when it comes before the body has gone (HttpClient reports
    /// the broken pipe instead).
    /// </summary>
    [Fact]
    public async Task ARestBodyOverTheLimitIs413()
    {
        await using var server = await ServerWithRequestLimit(1);
        var reference = Fixtures.Load(Model);
        string Body(int rows) => $$"""{"inputs": [{"name": "x", "datatype": "FP32", "shape": [{{rows}}, 128], "data": [{{string.Join(",", Enumerable.Repeat("0.125", rows * 128))}}]}]}""";
        string large = Body(2000), small = Body(3);
        Assert.True(large.Length > 1 << 20);

        string head = $"POST /v2/models/{Model}/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
        string declared = await RawHttp(server.RestPort, head + $"Content-Length: {large.Length}\r\n\r\n", large);
        Assert.StartsWith("HTTP/1.1 413 ", declared);
        Assert.Contains($"the request body of {large.Length:N0} bytes is over Limits:MaxRequestMiB (1,048,576 bytes); send fewer samples per request", declared);

        string chunked = await RawHttp(server.RestPort, head + "Transfer-Encoding: chunked\r\n\r\n", $"{large.Length:x}\r\n{large}\r\n0\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 413 ", chunked);
        Assert.Contains("the request body could not be read: Request body too large", chunked);

        string served = await RawHttp(server.RestPort, head + $"Content-Length: {small.Length}\r\nConnection: close\r\n\r\n", small);
        Assert.StartsWith("HTTP/1.1 200 ", served);
        Assert.Contains("\"shape\":[3,", served);
        Assert.Equal(3, reference.Inputs["x"].Shape[0]);
    }

    /// <summary>Writes a request on a new connection (as far as the server reads it) and reads the answer to the connection's end.</summary>
    private static async Task<string> RawHttp(int port, string head, string body)
    {
        using var socket = new System.Net.Sockets.TcpClient();
        await socket.ConnectAsync(System.Net.IPAddress.Loopback, port);
        var stream = socket.GetStream();
        try
        {
            await stream.WriteAsync(System.Text.Encoding.UTF8.GetBytes(head + body));
        }
        catch (IOException)
        {
            // The server answered and closed before taking the whole body: the answer is still there to read.
        }
        return await new StreamReader(stream).ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(30));
    }

    /// <summary>A started server with only <see cref="Model"/> and this Limits:MaxRequestMiB.</summary>
    private static async Task<ServerProcess> ServerWithRequestLimit(int mib)
    {
        var server = new ServerProcess
        {
            CopyFixtures = false,
            ExtraArgs = [$"--Limits:MaxRequestMiB={mib}", "--Models:Warmup=false"],
            PrepareRepository = root =>
            {
                var version = Directory.CreateDirectory(Path.Combine(root, Model, "1")).FullName;
                File.Copy(Fixtures.ModelPath(Model), Path.Combine(version, "model.onnx"));
            },
        };
        try
        {
            await server.InitializeAsync();
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }
}
