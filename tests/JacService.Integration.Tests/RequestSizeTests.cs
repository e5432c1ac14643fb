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
