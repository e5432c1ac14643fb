using Google.Protobuf;
using Grpc.Core;
using JacService.Protos.V1;
using JacService.Testing;
using Xunit.Abstractions;

namespace JacService.Integration.Tests;

/// <summary>
/// Raw gRPC frames that are not valid PredictRequest messages (random bytes, and valid requests with bytes flipped,
/// cut or inserted) sent to the real server: each that does not parse answers INVALID_ARGUMENT with the parser's
/// reason, each that happens to parse gets the status its content earns, the server serves a good request after, and
/// its log holds one line about them, not a stack trace per call.
/// </summary>
public class MalformedMessageTests(ITestOutputHelper output)
{
    private const int Calls = 3000;
    private static readonly Marshaller<byte[]> Raw = Marshallers.Create(bytes => bytes, bytes => bytes);
    private static readonly Method<byte[], byte[]> Predict = new(MethodType.Unary, "jacservice.v1.JacobianService", "Predict", Raw, Raw);

    [Fact]
    public async Task MessagesThatDoNotParseAreInvalidArgumentAndLoggedOncePerInterval()
    {
        // An interval longer than the test: the log must then hold exactly one line per kind of failure, whatever the timing.
        await using var server = new ServerProcess { ExtraArgs = ["--Models:Warmup=false", "--CallerErrors:LogIntervalSeconds=3600"] };
        await server.InitializeAsync();
        var invoker = server.Channel.CreateCallInvoker();
        var valid = ValidRequest().ToByteArray();
        var rng = new Random(20240615);
        var messages = Enumerable.Range(0, Calls).Select(i => i % 3 == 0 ? RandomBytes(rng) : Mutate(rng, valid)).ToList();
        int linesBefore = server.Log.Split('\n').Length;

        var outcomes = new List<(byte[] Message, StatusCode Code, string Detail)>();
        foreach (var chunk in messages.Chunk(16))
            outcomes.AddRange(await Task.WhenAll(chunk.Select(async message =>
            {
                try
                {
                    await invoker.AsyncUnaryCall(Predict, null, new CallOptions(deadline: DateTime.UtcNow.AddSeconds(30)), message);
                    return (message, StatusCode.OK, "");
                }
                catch (RpcException e)
                {
                    return (message, e.StatusCode, e.Status.Detail);
                }
            })));

        int unparsable = 0;
        foreach (var (message, code, detail) in outcomes)
        {
            if (ParseError(message) is { } reason)
            {
                unparsable++;
                Assert.Equal(StatusCode.InvalidArgument, code);
                Assert.Equal($"the request message does not parse as PredictRequest: {reason}", detail);
            }
            else
            {
                // It parsed: it is an ordinary request, refused (or served) as one.
                Assert.Contains(code, new[] { StatusCode.OK, StatusCode.InvalidArgument, StatusCode.NotFound, StatusCode.FailedPrecondition });
                if (code != StatusCode.OK) Assert.NotEmpty(detail);
            }
        }
        output.WriteLine($"{unparsable} of {Calls} did not parse; statuses: " +
            string.Join(", ", outcomes.GroupBy(o => o.Code).Select(g => $"{g.Key} {g.Count()}")));
        Assert.True(unparsable > Calls / 2, $"only {unparsable} of {Calls} messages failed to parse");

        // Still serving.
        var reply = await server.Client.PredictAsync(ValidRequest());
        Assert.NotEmpty(reply.Outputs);
        Assert.False(server.HasExited);

        // Every service is bound the same way: the standard health service too.
        var health = new Method<byte[], byte[]>(MethodType.Unary, "grpc.health.v1.Health", "Check", Raw, Raw);
        var refused = await Assert.ThrowsAsync<RpcException>(() => invoker.AsyncUnaryCall(health, null, new CallOptions(), [0xff, 0xff]).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, refused.StatusCode);
        Assert.StartsWith("the request message does not parse as HealthCheckRequest: ", refused.Status.Detail);

        var lines = server.Log.Split('\n').Skip(linesBefore).ToList();
        output.WriteLine(string.Join('\n', lines));
        Assert.Single(lines, l => l.Contains("does not parse", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.Contains("InvalidProtocolBufferException", StringComparison.Ordinal) || l.TrimStart().StartsWith("at ", StringComparison.Ordinal));
        // One line per kind of failure (malformed, and the statuses of those that parsed), each with its header line.
        Assert.True(lines.Count <= 12, $"{lines.Count} log lines about {Calls} calls:\n{string.Join('\n', lines)}");
    }

    private static PredictRequest ValidRequest()
    {
        var reference = Fixtures.Load("mlp_tanh");
        var request = new PredictRequest { Model = "mlp_tanh" };
        foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ServingTests.ToProto(t);
        return request;
    }

    private static string? ParseError(byte[] message)
    {
        try
        {
            PredictRequest.Parser.ParseFrom(message);
            return null;
        }
        catch (InvalidProtocolBufferException e)
        {
            return e.Message;
        }
    }

    private static byte[] RandomBytes(Random rng)
    {
        var bytes = new byte[rng.Next(1, 200)];
        rng.NextBytes(bytes);
        return bytes;
    }

    /// <summary>A valid request with a few bytes flipped, then maybe cut short or given bytes inserted.</summary>
    private static byte[] Mutate(Random rng, byte[] valid)
    {
        var bytes = valid.ToList();
        for (int flips = rng.Next(1, 4); flips > 0; flips--) bytes[rng.Next(bytes.Count)] = (byte)rng.Next(256);
        switch (rng.Next(3))
        {
            case 0:
                int keep = rng.Next(1, bytes.Count);
                bytes.RemoveRange(keep, bytes.Count - keep);
                break;
            case 1:
                bytes.InsertRange(rng.Next(bytes.Count), Enumerable.Range(0, rng.Next(1, 8)).Select(_ => (byte)rng.Next(256)));
                break;
        }
        return bytes.ToArray();
    }
}
