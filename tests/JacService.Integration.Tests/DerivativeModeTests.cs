using Grpc.Core;
using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>
/// Forward, reverse and AUTO Jacobians, Jvp and Vjp over gRPC, against the functorch references: Jvp and Vjp against
/// functorch's jvp/vjp of the references' random directions, and by contracting the reference Jacobian with basis
/// directions (J·e_k is column k, e_iᵀ·J is row i).
/// </summary>
[Collection(ServerCollection.Name)]
public class DerivativeModeTests(ServerProcess server)
{
    private const double Tolerance = 1e-4;

    public static TheoryData<string> Models => new(Fixtures.Names);

    public static TheoryData<string, DerivativeMode> ModelsAndModes
    {
        get
        {
            var data = new TheoryData<string, DerivativeMode>();
            foreach (var name in Fixtures.Names)
                foreach (var mode in new[] { DerivativeMode.Forward, DerivativeMode.Reverse, DerivativeMode.Auto })
                    data.Add(name, mode);
            return data;
        }
    }

    private static Tensor ToProto(RefTensor t) => ServingTests.ToProto(t);

    /// <summary>An explicit mode runs as asked; AUTO runs one of the two and says which.</summary>
    internal static void AssertRan(DerivativeMode asked, DerivativeMode ran, string what)
    {
        if (asked == DerivativeMode.Auto) Assert.True(ran is DerivativeMode.Forward or DerivativeMode.Reverse, $"{what}: AUTO ran {ran}");
        else Assert.True(asked == ran, $"{what}: asked {asked}, ran {ran}");
    }

    [Theory]
    [MemberData(nameof(ModelsAndModes))]
    public async Task BatchJacobianInEachMode(string name, DerivativeMode mode)
    {
        var reference = Fixtures.Load(name);
        foreach (var (wrt, perOutput) in reference.Jacobians)
        {
            var request = new BatchJacobianRequest { Model = name, Wrt = wrt, Mode = mode };
            foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ToProto(t);
            var response = await server.Client.BatchJacobianAsync(request);
            AssertRan(mode, response.Mode, $"{name} d/d{wrt}");
            foreach (var (output, expected) in perOutput)
                Compare.Close(expected, response.Jacobians[output].Shape.ToArray(), response.Jacobians[output].Data, Tolerance,
                    $"{name} {mode} d{output}/d{wrt}");
            foreach (var (output, expected) in reference.Outputs)
                Compare.Close(expected, response.Outputs[output].Shape.ToArray(), response.Outputs[output].Data, Tolerance, $"{name}.{output}");
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public async Task JvpAndVjpMatchFunctorch(string name)
    {
        var reference = Fixtures.Load(name);
        foreach (var (wrt, jvp) in reference.Jvp)
        {
            var request = new JvpRequest { Model = name, Wrt = wrt, Tangents = ToProto(jvp.Tangents) };
            foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ToProto(t);
            var response = await server.Client.JvpAsync(request);
            Assert.Equal(DerivativeMode.Forward, response.Mode);
            Assert.Equal(jvp.Outputs.Keys.Order(), response.Jvps.Keys.Order());
            foreach (var (output, expected) in jvp.Outputs)
                Compare.Close(expected, response.Jvps[output].Shape.ToArray(), response.Jvps[output].Data, Tolerance, $"{name} jvp d{output}/d{wrt}");
        }
        foreach (var (wrt, vjp) in reference.Vjp)
        {
            var request = new VjpRequest { Model = name, Wrt = wrt };
            foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ToProto(t);
            foreach (var (output, c) in vjp.Cotangents) request.Cotangents[output] = ToProto(c);
            var response = await server.Client.VjpAsync(request);
            Assert.Equal(DerivativeMode.Reverse, response.Mode);
            Compare.Close(vjp.Result, response.Vjp.Shape.ToArray(), response.Vjp.Data, Tolerance, $"{name} vjp d/d{wrt}");
        }
    }

    [Theory]
    [MemberData(nameof(ModelsAndModes))]
    public async Task JacobianInEachMode(string name, DerivativeMode mode)
    {
        var reference = Fixtures.Load(name);
        const int b = 1;
        foreach (var (wrt, perOutput) in reference.Jacobians)
        {
            var request = new JacobianRequest { Model = name, Wrt = wrt, Mode = mode };
            foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ToProto(t.Sample(b));
            var response = await server.Client.JacobianAsync(request);
            AssertRan(mode, response.Mode, $"{name} d/d{wrt}");
            foreach (var (output, expected) in perOutput)
                Compare.Close(expected.Sample(b), response.Jacobians[output].Shape.ToArray(), response.Jacobians[output].Data, Tolerance,
                    $"{name} {mode} sample {b} d{output}/d{wrt}");
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public async Task JvpWithBasisTangentsGivesJacobianColumns(string name)
    {
        var reference = Fixtures.Load(name);
        foreach (var (wrt, perOutput) in reference.Jacobians)
        {
            var x = reference.Inputs[wrt];
            var request = new JvpRequest { Model = name, Wrt = wrt, Tangents = ToProto(Basis(x.Shape)) };
            foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ToProto(t);
            var response = await server.Client.JvpAsync(request);
            Assert.Equal(DerivativeMode.Forward, response.Mode);
            Assert.Equal(perOutput.Keys.Order(), response.Jvps.Keys.Order());
            foreach (var (output, jacobian) in perOutput)
            {
                var expected = Columns(jacobian, reference.Outputs[output].Shape, x.Shape);
                Compare.Close(expected, response.Jvps[output].Shape.ToArray(), response.Jvps[output].Data, Tolerance, $"{name} J·e d{output}/d{wrt}");
            }
            foreach (var (output, expected) in reference.Outputs)
                Compare.Close(expected, response.Outputs[output].Shape.ToArray(), response.Outputs[output].Data, Tolerance, $"{name}.{output}");
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public async Task VjpWithBasisCotangentsGivesJacobianRows(string name)
    {
        var reference = Fixtures.Load(name);
        foreach (var (wrt, perOutput) in reference.Jacobians)
            foreach (var (output, jacobian) in perOutput)
            {
                var y = reference.Outputs[output];
                var request = new VjpRequest { Model = name, Wrt = wrt, Cotangents = { [output] = ToProto(Basis(y.Shape)) } };
                foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ToProto(t);
                var response = await server.Client.VjpAsync(request);
                Assert.Equal(DerivativeMode.Reverse, response.Mode);
                // J as [B, ..out, ..in] read as [B, m, ..in] is exactly the rows e_iᵀ·J.
                long m = y.Data.Length / y.Shape[0];
                var expected = new RefTensor([y.Shape[0], m, .. reference.Inputs[wrt].Shape[1..]], jacobian.Data);
                Compare.Close(expected, response.Vjp.Shape.ToArray(), response.Vjp.Data, Tolerance, $"{name} eᵀ·J d{output}/d{wrt}");
            }
    }

    [Fact]
    public async Task VjpWithOneCotangentPerSampleSumsOverOutputs()
    {
        // u = (1, 1, ...) on both outputs: the gradient of the sum of all outputs, the column sums of both Jacobians.
        var reference = Fixtures.Load("two_outputs");
        var x = reference.Inputs["x"];
        var request = new VjpRequest { Model = "two_outputs", Inputs = { ["x"] = ToProto(x) } };
        foreach (var (output, y) in reference.Outputs) request.Cotangents[output] = ToProto(new RefTensor(y.Shape, y.Data.Select(_ => 1.0).ToArray()));
        var response = await server.Client.VjpAsync(request);
        long batch = x.Shape[0], n = x.Data.Length / batch;
        var expected = new double[batch * n];
        foreach (var (output, jacobian) in reference.Jacobians["x"])
        {
            long m = reference.Outputs[output].Data.Length / batch;
            for (long b = 0; b < batch; b++)
                for (long i = 0; i < m; i++)
                    for (long j = 0; j < n; j++) expected[b * n + j] += jacobian.Data[(b * m + i) * n + j];
        }
        Compare.Close(new RefTensor(x.Shape, expected), response.Vjp.Shape.ToArray(), response.Vjp.Data, Tolerance, "1ᵀ·J");
    }

    /// <summary>[B, k] ++ shape[1..] with one-hot directions: sample b, direction k has a 1 at flat position k.</summary>
    internal static RefTensor Basis(long[] batchedShape)
    {
        long batch = batchedShape[0], k = batchedShape[1..].Aggregate(1L, (p, d) => p * d);
        var data = new double[batch * k * k];
        for (long b = 0; b < batch; b++)
            for (long i = 0; i < k; i++) data[(b * k + i) * k + i] = 1;
        return new RefTensor([batch, k, .. batchedShape[1..]], data);
    }

    /// <summary>The columns of J [B, ..out, ..in] as [B, n, ..out]: what a Jvp along the input basis returns.</summary>
    private static RefTensor Columns(RefTensor jacobian, long[] outShape, long[] inShape)
    {
        long batch = outShape[0], m = outShape[1..].Aggregate(1L, (p, d) => p * d), n = inShape[1..].Aggregate(1L, (p, d) => p * d);
        var data = new double[batch * n * m];
        for (long b = 0; b < batch; b++)
            for (long i = 0; i < m; i++)
                for (long j = 0; j < n; j++) data[(b * n + j) * m + i] = jacobian.Data[(b * m + i) * n + j];
        return new RefTensor([batch, n, .. outShape[1..]], data);
    }

    // ---- Bad Jvp and Vjp requests: exact message, then the server still answers a good call ----------------------

    private static Tensor T(long[] shape, Func<int, float>? value = null)
    {
        var t = new Tensor();
        t.Shape.AddRange(shape);
        t.Data.AddRange(Enumerable.Range(0, (int)shape.Aggregate(1L, (p, d) => p * d)).Select(value ?? (i => (float)Math.Sin(i))));
        return t;
    }

    public static TheoryData<string, string> BadCases => new()
    {
        { "wrong tangent shape", "tangents for 'x': expected shape [3, 32] (one direction per sample) or [3, T, 32] (T directions per sample), got [3, 31]" },
        { "no tangents", "no tangents: give tangents for 'x' with the batch axis first" },
        { "NaN in a cotangent", "cotangents for 'y' holds NaN at flat index 5; values must be finite" },
        { "cotangent for an output not in of", "cotangent for output 'log_var', which is not in 'of' (mean)" },
        { "cotangents with different T", "cotangents for 'log_var' have 4 directions per sample, those for 'mean' have 2 directions per sample; all must have the same" },
        { "no cotangents", "no cotangents: give one per output to differentiate, e.g. a 1 at the class score whose gradient you want" },
        { "unknown mode", "mode must be DERIVATIVE_MODE_AUTO (0), DERIVATIVE_MODE_FORWARD (1) or DERIVATIVE_MODE_REVERSE (2), got 7" },
    };

    private Task Send(string name) => name switch
    {
        "wrong tangent shape" => server.Client.JvpAsync(new JvpRequest { Model = "mlp_tanh", Inputs = { ["x"] = T([3, 32]) }, Tangents = T([3, 31]) }).ResponseAsync,
        "no tangents" => server.Client.JvpAsync(new JvpRequest { Model = "mlp_tanh", Inputs = { ["x"] = T([3, 32]) } }).ResponseAsync,
        "NaN in a cotangent" => server.Client.VjpAsync(new VjpRequest
        {
            Model = "mlp_tanh", Inputs = { ["x"] = T([3, 32]) }, Cotangents = { ["y"] = T([3, 16], i => i == 5 ? float.NaN : 1f) },
        }).ResponseAsync,
        "cotangent for an output not in of" => server.Client.VjpAsync(new VjpRequest
        {
            Model = "two_outputs", Of = { "mean" }, Inputs = { ["x"] = T([3, 6]) }, Cotangents = { ["mean"] = T([3, 3]), ["log_var"] = T([3, 3]) },
        }).ResponseAsync,
        "cotangents with different T" => server.Client.VjpAsync(new VjpRequest
        {
            Model = "two_outputs", Inputs = { ["x"] = T([3, 6]) }, Cotangents = { ["mean"] = T([3, 2, 3]), ["log_var"] = T([3, 4, 3]) },
        }).ResponseAsync,
        "no cotangents" => server.Client.VjpAsync(new VjpRequest { Model = "mlp_tanh", Inputs = { ["x"] = T([3, 32]) } }).ResponseAsync,
        "unknown mode" => server.Client.BatchJacobianAsync(new BatchJacobianRequest
        {
            Model = "mlp_tanh", Inputs = { ["x"] = T([3, 32]) }, Mode = (DerivativeMode)7,
        }).ResponseAsync,
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(BadCases))]
    public async Task BadJvpOrVjpIsInvalidArgumentWithTheExactMessage(string name, string message)
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => Send(name));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Equal(message, e.Status.Detail);

        var good = await server.Client.VjpAsync(new VjpRequest { Model = "mlp_tanh", Inputs = { ["x"] = T([3, 32]) }, Cotangents = { ["y"] = T([3, 16]) } });
        Assert.Equal([3, 32], good.Vjp.Shape);
        var jvp = await server.Client.JvpAsync(new JvpRequest { Model = "mlp_tanh", Inputs = { ["x"] = T([3, 32]) }, Tangents = T([3, 2, 32]) });
        Assert.Equal([3, 2, 16], jvp.Jvps["y"].Shape);
    }
}
