using Grpc.Core;
using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>Each malformed request gets its exact status and a message naming what was expected; the server keeps serving.</summary>
[Collection(ServerCollection.Name)]
public class BadInputTests(ServerProcess server)
{
    // Built by hand, not with the client's Tensors.Create: these tensors are malformed on purpose.
    private static Tensor T(long[] shape, float[]? data = null)
    {
        var t = new Tensor();
        t.Shape.AddRange(shape);
        t.Data.AddRange(data ?? Enumerable.Range(0, (int)shape.Aggregate(1L, (p, d) => p * d)).Select(i => (float)Math.Sin(i)).ToArray());
        return t;
    }

    private static PredictRequest Mlp(Tensor x, string model = "mlp_tanh", string version = "") =>
        new() { Model = model, Version = version, Inputs = { ["x"] = x } };

    private static BatchJacobianRequest TwoInputs(long batchX = 2, long batchZ = 2, string wrt = "x", params string[] of) =>
        new() { Model = "two_inputs", Wrt = wrt, Of = { of }, Inputs = { ["x"] = T([batchX, 8]), ["z"] = T([batchZ, 4]) } };

    public static TheoryData<string, StatusCode, string> Cases => new()
    {
        { "unknown model", StatusCode.NotFound, "model 'nope' not found" },
        { "unknown version", StatusCode.NotFound, "version 7 of model 'mlp_tanh' not found" },
        { "version not a number", StatusCode.NotFound, "versions are positive integers" },
        // The name is quoted cut and escaped: 10,000 characters echoed back would pass the 8 KiB that gRPC's C core takes
        // in a header, and such a client saw RESOURCE_EXHAUSTED of its own in place of NOT_FOUND.
        { "model name of 10,000 characters", StatusCode.NotFound, $"model '{new string('m', 100)}…' (10,000 characters) not found" },
        { "model name with a line break", StatusCode.NotFound, "model 'mlp\\u000atanh' not found" },
        { "missing input", StatusCode.InvalidArgument, "missing input 'z'" },
        { "extra input", StatusCode.InvalidArgument, "unknown input 'q'" },
        { "wrong rank", StatusCode.InvalidArgument, "expected shape [B, 32], got [64]" },
        { "wrong shape", StatusCode.InvalidArgument, "expected shape [B, 32], got [2, 31]" },
        { "negative dimension", StatusCode.InvalidArgument, "got [-2, 32]; every open axis (B, ?) needs at least 1" },
        { "no rows", StatusCode.InvalidArgument, "input 'x': expected shape [B, 32], got [0, 32]; every open axis (B, ?) needs at least 1" },
        { "data length", StatusCode.InvalidArgument, "needs 64 values, got 63" },
        { "batch sizes differ", StatusCode.InvalidArgument, "has batch size 3, other inputs have 2" },
        { "single sample with batch axis", StatusCode.InvalidArgument, "expected shape [32], got [1, 32]" },
        { "NaN", StatusCode.InvalidArgument, "holds NaN at flat index 5" },
        { "infinity", StatusCode.InvalidArgument, "holds +Inf at flat index 0" },
        { "unknown wrt", StatusCode.InvalidArgument, "unknown wrt 'w'" },
        { "ambiguous wrt", StatusCode.InvalidArgument, "has 2 float inputs (x, z); name one in 'wrt'" },
        { "unknown of", StatusCode.InvalidArgument, "unknown output 'nope' in 'of'" },
        { "result too large", StatusCode.ResourceExhausted, "over the limit of" },
        // Any message is cut at 2,000 characters, whatever it echoes.
        { "input name of 20,000 characters", StatusCode.InvalidArgument, "… (cut from 20" },
    };

    private Task Send(string name) => name switch
    {
        "unknown model" => server.Client.PredictAsync(Mlp(T([2, 32]), model: "nope")).ResponseAsync,
        "unknown version" => server.Client.PredictAsync(Mlp(T([2, 32]), version: "7")).ResponseAsync,
        "version not a number" => server.Client.PredictAsync(Mlp(T([2, 32]), version: "latest")).ResponseAsync,
        "model name of 10,000 characters" => server.Client.PredictAsync(Mlp(T([2, 32]), model: new string('m', 10_000))).ResponseAsync,
        "model name with a line break" => server.Client.PredictAsync(Mlp(T([2, 32]), model: "mlp\ntanh")).ResponseAsync,
        "missing input" => server.Client.BatchJacobianAsync(new BatchJacobianRequest { Model = "two_inputs", Wrt = "x", Inputs = { ["x"] = T([2, 8]) } }).ResponseAsync,
        "extra input" => server.Client.PredictAsync(new PredictRequest { Model = "mlp_tanh", Inputs = { ["x"] = T([2, 32]), ["q"] = T([2]) } }).ResponseAsync,
        "wrong rank" => server.Client.PredictAsync(Mlp(T([64]))).ResponseAsync,
        "wrong shape" => server.Client.PredictAsync(Mlp(T([2, 31]))).ResponseAsync,
        "negative dimension" => server.Client.PredictAsync(Mlp(T([-2, 32], new float[64]))).ResponseAsync,
        "no rows" => server.Client.PredictAsync(Mlp(T([0, 32]))).ResponseAsync,
        "data length" => server.Client.PredictAsync(Mlp(T([2, 32], new float[63]))).ResponseAsync,
        "batch sizes differ" => server.Client.BatchJacobianAsync(TwoInputs(batchX: 2, batchZ: 3)).ResponseAsync,
        "single sample with batch axis" => server.Client.JacobianAsync(new JacobianRequest { Model = "mlp_tanh", Inputs = { ["x"] = T([1, 32]) } }).ResponseAsync,
        "NaN" => server.Client.PredictAsync(Mlp(T([2, 32], Enumerable.Range(0, 64).Select(i => i == 5 ? float.NaN : 0f).ToArray()))).ResponseAsync,
        "infinity" => server.Client.JacobianAsync(new JacobianRequest { Model = "mlp_tanh", Inputs = { ["x"] = T([32], Enumerable.Range(0, 32).Select(i => i == 0 ? float.PositiveInfinity : 0f).ToArray()) } }).ResponseAsync,
        "unknown wrt" => server.Client.BatchJacobianAsync(TwoInputs(wrt: "w")).ResponseAsync,
        "ambiguous wrt" => server.Client.BatchJacobianAsync(TwoInputs(wrt: "")).ResponseAsync,
        "unknown of" => server.Client.BatchJacobianAsync(TwoInputs(of: "nope")).ResponseAsync,
        "input name of 20,000 characters" => server.Client.PredictAsync(new PredictRequest { Model = "mlp_tanh", Inputs = { ["x"] = T([2, 32]), [new string('q', 20_000)] = T([2]) } }).ResponseAsync,
        // 9000 images x 10 outputs x 784 inputs x 4 bytes = 282 MB of Jacobian, over the default 256 MiB.
        "result too large" => server.Client.BatchJacobianAsync(new BatchJacobianRequest { Model = "small_cnn", Inputs = { ["image"] = T([9000, 1, 28, 28], new float[9000 * 784]) } }).ResponseAsync,
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task GetsItsStatusAndTheServerKeepsServing(string name, StatusCode code, string message)
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => Send(name));
        Assert.Equal(code, e.StatusCode);
        Assert.Contains(message, e.Status.Detail);
        Assert.True(e.Status.Detail.Length < 2100, $"a status detail of {e.Status.Detail.Length} characters");

        Assert.False(server.HasExited);
        var reference = Fixtures.Load("mlp_tanh");
        var ok = await server.Client.PredictAsync(Mlp(ServingTests.ToProto(reference.Inputs["x"])));
        Compare.Close(reference.Outputs["y"], ok.Outputs["y"].Shape.ToArray(), ok.Outputs["y"].Data, 1e-4, "after " + name);
    }
}
