using Grpc.Core;
using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>
/// Malformed BatchHessian and BatchLaplacian requests get their status and a message naming the problem, as
/// BatchJacobian's do; all of it is refused before the request is queued, and the server keeps serving.
/// </summary>
[Collection(ServerCollection.Name)]
public class SecondOrderBadRequestTests(ServerProcess server)
{
    private static Tensor T(params long[] shape)
    {
        var t = new Tensor();
        t.Shape.AddRange(shape);
        t.Data.AddRange(Enumerable.Range(0, (int)shape.Aggregate(1L, (p, d) => p * d)).Select(i => (float)Math.Sin(i)));
        return t;
    }

    private static BatchLaplacianRequest Pinn(params long[] axes) => new() { Model = "pinn", Inputs = { ["xt"] = T(3, 2) }, Axes = { axes } };

    private static BatchHessianRequest TwoInputsHessian(string wrt = "x", params string[] of) =>
        new() { Model = "two_inputs", Wrt = wrt, Of = { of }, Inputs = { ["x"] = T(2, 8), ["z"] = T(2, 4) } };

    private static BatchLaplacianRequest TwoInputsLaplacian(string wrt = "x", params string[] of) =>
        new() { Model = "two_inputs", Wrt = wrt, Of = { of }, Inputs = { ["x"] = T(2, 8), ["z"] = T(2, 4) } };

    public static TheoryData<string, StatusCode, string> Cases => new()
    {
        { "axis past the end", StatusCode.InvalidArgument, "axes holds 2, out of range: 'xt' has 2 elements per sample (shape [2]), so axes must lie in [0, 1]" },
        { "negative axis", StatusCode.InvalidArgument, "axes holds -1, out of range: 'xt' has 2 elements per sample (shape [2]), so axes must lie in [0, 1]" },
        { "repeated axis", StatusCode.InvalidArgument, "axes names 0 more than once; each element of wrt is summed at most once" },
        { "axis of the other input's size", StatusCode.InvalidArgument, "axes holds 4, out of range: 'z' has 4 elements per sample (shape [4]), so axes must lie in [0, 3]" },
        { "hessian: unknown wrt", StatusCode.InvalidArgument, "unknown wrt 'w'" },
        { "laplacian: unknown wrt", StatusCode.InvalidArgument, "unknown wrt 'w'" },
        { "hessian: ambiguous wrt", StatusCode.InvalidArgument, "has 2 float inputs (x, z); name one in 'wrt'" },
        { "laplacian: ambiguous wrt", StatusCode.InvalidArgument, "has 2 float inputs (x, z); name one in 'wrt'" },
        { "hessian: unknown of", StatusCode.InvalidArgument, "unknown output 'nope' in 'of'" },
        { "laplacian: unknown of", StatusCode.InvalidArgument, "unknown output 'nope' in 'of'" },
        { "hessian: no batch axis", StatusCode.InvalidArgument, "expected shape [B, 2], got [2]" },
        { "hessian: unknown model", StatusCode.NotFound, "model 'nope' not found" },
    };

    private Task Send(string name) => name switch
    {
        "axis past the end" => server.Client.BatchLaplacianAsync(Pinn(0, 2)).ResponseAsync,
        "negative axis" => server.Client.BatchLaplacianAsync(Pinn(-1)).ResponseAsync,
        "repeated axis" => server.Client.BatchLaplacianAsync(Pinn(0, 1, 0)).ResponseAsync,
        // Axes index wrt's sample, so z (4 elements) bounds them, not x (8).
        "axis of the other input's size" => server.Client.BatchLaplacianAsync(new BatchLaplacianRequest
        {
            Model = "two_inputs", Wrt = "z", Axes = { 4 }, Inputs = { ["x"] = T(2, 8), ["z"] = T(2, 4) },
        }).ResponseAsync,
        "hessian: unknown wrt" => server.Client.BatchHessianAsync(TwoInputsHessian(wrt: "w")).ResponseAsync,
        "laplacian: unknown wrt" => server.Client.BatchLaplacianAsync(TwoInputsLaplacian(wrt: "w")).ResponseAsync,
        "hessian: ambiguous wrt" => server.Client.BatchHessianAsync(TwoInputsHessian(wrt: "")).ResponseAsync,
        "laplacian: ambiguous wrt" => server.Client.BatchLaplacianAsync(TwoInputsLaplacian(wrt: "")).ResponseAsync,
        "hessian: unknown of" => server.Client.BatchHessianAsync(TwoInputsHessian(of: "nope")).ResponseAsync,
        "laplacian: unknown of" => server.Client.BatchLaplacianAsync(TwoInputsLaplacian(of: "nope")).ResponseAsync,
        "hessian: no batch axis" => server.Client.BatchHessianAsync(new BatchHessianRequest { Model = "pinn", Inputs = { ["xt"] = T(2) } }).ResponseAsync,
        "hessian: unknown model" => server.Client.BatchHessianAsync(new BatchHessianRequest { Model = "nope", Inputs = { ["xt"] = T(3, 2) } }).ResponseAsync,
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task GetsItsStatusAndTheServerKeepsServing(string name, StatusCode code, string message)
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => Send(name));
        Assert.Equal(code, e.StatusCode);
        Assert.Contains(message, e.Status.Detail);

        Assert.False(server.HasExited);
        var reference = Fixtures.Load("pinn");
        var ok = await server.Client.PredictAsync(new PredictRequest { Model = "pinn", Inputs = { ["xt"] = ServingTests.ToProto(reference.Inputs["xt"]) } });
        Compare.Close(reference.Outputs["u"], ok.Outputs["u"].Shape.ToArray(), ok.Outputs["u"].Data, 1e-4, "after " + name);
    }

    /// <summary>5000 mlp_tanh samples: a Hessian of 16 x 32 x 32 floats each is 328 MB, over the default 256 MiB.</summary>
    [Fact]
    public async Task AHessianOverTheDefaultLimitIsRefusedBeforeAnyWork()
    {
        var request = new BatchHessianRequest { Model = "mlp_tanh", Inputs = { ["x"] = T(5000, 32) } };
        var e = await Assert.ThrowsAsync<RpcException>(() => server.Client.BatchHessianAsync(request).ResponseAsync);
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        Assert.Contains("the Hessian result would take 328,000,000 bytes (5000 samples x 16,400 floats), over the limit of 268,435,456", e.Status.Detail);
    }
}
