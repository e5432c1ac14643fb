using Google.Protobuf;
using Grpc.Core;
using JacService.Client;
using JacService.Protos.V1;
using JacService.Testing;
using static JacService.Integration.Tests.ClientTesting;

namespace JacService.Integration.Tests;

/// <summary>
/// JacobianStream: every message answered in order with the numbers of the functorch references and of the unary
/// call; a bad request answered in its place while the stream goes on; the deadline and a message that does not
/// parse end the stream; the client's session shared by many tasks.
/// </summary>
[Collection(ServerCollection.Name)]
public class JacobianStreamTests(ServerProcess server)
{
    public static TheoryData<string> Models => new(Fixtures.Names);

    private readonly JacServiceClient _client = ClientFor(server);

    [Theory]
    [MemberData(nameof(Models))]
    public async Task EverySampleOfEveryFixtureEqualsTheReference(string name)
    {
        var reference = Fixtures.Load(name);
        int samples = (int)reference.Inputs.Values.First().Shape[0];
        foreach (var (wrt, perOutput) in reference.Jacobians)
        {
            await using var session = _client.OpenJacobianStream(name, wrt: wrt);
            // All sent before any answer is awaited: the server computes them concurrently and answers in order.
            var answers = Enumerable.Range(0, samples).Select(b => session.JacobianAsync(SampleInputs(reference, b))).ToList();
            for (int b = 0; b < samples; b++)
            {
                var result = await answers[b];
                Assert.Equal(name, result.Model);
                Assert.Contains(result.Mode, new[] { DerivativeMode.Forward, DerivativeMode.Reverse });
                Assert.Equal(perOutput.Keys.Order(), result.Jacobians.Keys.Order());
                foreach (var (output, expected) in perOutput) Close(expected.Sample(b), result.Jacobians[output], $"{name} d{output}/d{wrt} sample {b}");
                foreach (var (output, expected) in reference.Outputs) Close(expected.Sample(b), result.Outputs[output], $"{name}.{output} sample {b}");

                var unary = await _client.JacobianAsync(name, SampleInputs(reference, b), wrt: wrt, mode: result.Mode);
                foreach (var (output, t) in unary.Jacobians)
                    Compare.Close(new RefTensor(t.Shape, [.. t.ToArray().Select(f => (double)f)]), result.Jacobians[output].Shape,
                        result.Jacobians[output].ToArray(), 1e-5, $"{name} d{output}/d{wrt} sample {b}: stream vs unary");
            }
        }
    }

    [Fact]
    public async Task ABadRequestIsAnsweredInItsPlaceAndTheStreamGoesOn()
    {
        var reference = Fixtures.Load("mlp_tanh");
        var good = Request("mlp_tanh", SampleInputs(reference, 0));
        var wrongShape = Request("mlp_tanh", new Dictionary<string, FloatTensor> { ["x"] = new(new float[31], [31]) });
        var unknown = Request("no_such_model", SampleInputs(reference, 0));
        var notFinite = Request("mlp_tanh", new Dictionary<string, FloatTensor> { ["x"] = new(Enumerable.Repeat(float.NaN, 32).ToArray(), [32]) });
        JacobianRequest[] requests = [good, wrongShape, unknown, notFinite, good];

        using var call = server.Client.JacobianStream(deadline: DateTime.UtcNow.AddSeconds(60));
        foreach (var r in requests) await call.RequestStream.WriteAsync(r);
        await call.RequestStream.CompleteAsync();
        var answers = new List<JacobianStreamResponse>();
        await foreach (var a in call.ResponseStream.ReadAllAsync()) answers.Add(a);

        Assert.Equal([0L, 1, 2, 3, 4], answers.Select(a => a.Sequence));
        foreach (int i in new[] { 0, 4 })
        {
            Assert.Equal(0, answers[i].Code);
            Close(reference.Jacobians["x"]["y"].Sample(0), FloatTensor.FromProto(answers[i].Result.Jacobians["y"]), $"answer {i}");
        }
        // Each refusal is what the unary call says of the same request, status and message.
        foreach (int i in new[] { 1, 2, 3 })
        {
            var unary = await Assert.ThrowsAsync<RpcException>(() => server.Client.JacobianAsync(requests[i], deadline: DateTime.UtcNow.AddSeconds(30)).ResponseAsync);
            Assert.Equal((int)unary.StatusCode, answers[i].Code);
            Assert.Equal(unary.Status.Detail, answers[i].Message);
            Assert.Null(answers[i].Result);
        }
        Assert.Equal((int)StatusCode.InvalidArgument, answers[1].Code);
        Assert.Contains("[31]", answers[1].Message);
        Assert.Equal((int)StatusCode.NotFound, answers[2].Code);
        Assert.Equal((int)StatusCode.InvalidArgument, answers[3].Code);
    }

    [Fact]
    public async Task ManyTasksShareOneSessionAndEachGetsItsOwnAnswer()
    {
        var reference = Fixtures.Load("pinn");
        int samples = (int)reference.Inputs.Values.First().Shape[0];
        await using var session = _client.OpenJacobianStream("pinn");
        var answers = await Task.WhenAll(Enumerable.Range(0, 200).Select(i => Task.Run(async () =>
            (Sample: i % samples, Result: await session.JacobianAsync(SampleInputs(reference, i % samples))))));
        foreach (var (sample, result) in answers)
            foreach (var (output, expected) in reference.Jacobians.Values.Single())
                Close(expected.Sample(sample), result.Jacobians[output], $"pinn d{output} sample {sample}");
    }

    [Fact]
    public async Task TheDeadlineEndsTheSessionAndEveryLaterRequestFails()
    {
        var reference = Fixtures.Load("mlp_tanh");
        await using var session = _client.OpenJacobianStream("mlp_tanh", timeout: TimeSpan.FromSeconds(2));
        await session.JacobianAsync(SampleInputs(reference, 0));
        await Task.Delay(TimeSpan.FromSeconds(3));
        var late = await Assert.ThrowsAsync<RpcException>(() => session.JacobianAsync(SampleInputs(reference, 1)));
        Assert.Equal(StatusCode.DeadlineExceeded, late.StatusCode);
        var later = await Assert.ThrowsAsync<RpcException>(() => session.JacobianAsync(SampleInputs(reference, 1)));
        Assert.Equal(StatusCode.DeadlineExceeded, later.StatusCode);
    }

    [Fact]
    public async Task AMessageThatDoesNotParseEndsTheStreamAfterTheAnswersBeforeIt()
    {
        var reference = Fixtures.Load("mlp_tanh");
        var bytes = Marshallers.Create(b => b, b => b);
        var method = new Method<byte[], byte[]>(MethodType.DuplexStreaming, "jacservice.v1.JacobianService", "JacobianStream", bytes, bytes);
        using var call = server.Channel.CreateCallInvoker().AsyncDuplexStreamingCall(method, null, new CallOptions(deadline: DateTime.UtcNow.AddSeconds(60)));
        await call.RequestStream.WriteAsync(Request("mlp_tanh", SampleInputs(reference, 0)).ToByteArray());
        var first = await call.ResponseStream.MoveNext(CancellationToken.None);
        Assert.True(first);
        Assert.Equal(0, JacobianStreamResponse.Parser.ParseFrom(call.ResponseStream.Current).Code);

        // Field 1 (model, a string) with a length running past the end of the message.
        await call.RequestStream.WriteAsync([0x0A, 0x7F, 0x61]);
        var e = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("does not parse as JacobianRequest", e.Status.Detail);
    }

    private static JacobianRequest Request(string model, Dictionary<string, FloatTensor> inputs)
    {
        var request = new JacobianRequest { Model = model };
        foreach (var (name, t) in inputs) request.Inputs[name] = t.ToProto();
        return request;
    }
}
