using Grpc.Core;
using JacService.Client;
using JacService.Protos.V1;
using JacService.Testing;
using Microsoft.Extensions.DependencyInjection;
using static JacService.Integration.Tests.ClientTesting;

namespace JacService.Integration.Tests;

/// <summary>Every call of the typed client against the real server, its numbers against the functorch references.</summary>
[Collection(ServerCollection.Name)]
public class ClientLibraryTests(ServerProcess server)
{
    public static TheoryData<string> Models => new(Fixtures.Names);

    private readonly JacServiceClient _client = ClientFor(server);

    [Theory]
    [MemberData(nameof(Models))]
    public async Task Predict(string name)
    {
        var reference = Fixtures.Load(name);
        var result = await _client.PredictAsync(name, Inputs(reference));
        Assert.Equal(name, result.Model);
        Assert.Equal(reference.Outputs.Keys.Order(), result.Outputs.Keys.Order());
        foreach (var (output, expected) in reference.Outputs) Close(expected, result.Outputs[output], $"{name}.{output}");
    }

    [Theory]
    [MemberData(nameof(Models))]
    public async Task JacobianOfOneSample(string name)
    {
        var reference = Fixtures.Load(name);
        foreach (var (wrt, perOutput) in reference.Jacobians)
        {
            var result = await _client.JacobianAsync(name, SampleInputs(reference, 1), wrt: wrt);
            foreach (var (output, expected) in perOutput) Close(expected.Sample(1), result.Jacobians[output], $"{name} d{output}/d{wrt}");
            foreach (var (output, expected) in reference.Outputs) Close(expected.Sample(1), result.Outputs[output], $"{name}.{output}");
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public async Task BatchJacobian(string name)
    {
        var reference = Fixtures.Load(name);
        foreach (var (wrt, perOutput) in reference.Jacobians)
        {
            var result = await _client.BatchJacobianAsync(name, Inputs(reference), wrt: wrt);
            foreach (var (output, expected) in perOutput) Close(expected, result.Jacobians[output], $"{name} d{output}/d{wrt}");
            foreach (var (output, expected) in reference.Outputs) Close(expected, result.Outputs[output], $"{name}.{output}");
        }
    }

    [Theory]
    [InlineData(DerivativeMode.Forward)]
    [InlineData(DerivativeMode.Reverse)]
    [InlineData(DerivativeMode.Auto)]
    public async Task EveryJacobianCallTakesAModeAndReportsWhatRan(DerivativeMode mode)
    {
        var reference = Fixtures.Load("two_outputs");
        var expected = reference.Jacobians["x"]["log_var"];
        var one = await _client.JacobianAsync("two_outputs", SampleInputs(reference, 1), mode: mode);
        var batch = await _client.BatchJacobianAsync("two_outputs", Inputs(reference), mode: mode);
        var streamed = await _client.StreamBatchJacobianAsync("two_outputs", Inputs(reference), maxRowsPerChunk: 2, mode: mode);
        Close(expected.Sample(1), one.Jacobians["log_var"], "one sample");
        Close(expected, batch.Jacobians["log_var"], "batch");
        Close(expected, streamed.Jacobians["log_var"], "stream");
        foreach (var ran in new[] { one.Mode, batch.Mode, streamed.Mode })
            DerivativeModeTests.AssertRan(mode, ran, "two_outputs");
    }

    [Fact]
    public async Task JvpAlongTheBasisGivesJacobianColumns()
    {
        var reference = Fixtures.Load("mlp_tanh");
        var x = reference.Inputs["x"];
        var result = await _client.JvpAsync("mlp_tanh", Inputs(reference), ToTensor(DerivativeModeTests.Basis(x.Shape)));
        Assert.Equal(DerivativeMode.Forward, result.Mode);
        var jacobian = reference.Jacobians["x"]["y"];
        Assert.Equal([3, 32, 16], result.Jvps["y"].Shape);
        // jvp[b, k, i] = J[b, i, k]
        for (int b = 0; b < 3; b++)
            for (int k = 0; k < 32; k++)
                for (int i = 0; i < 16; i++)
                    Assert.True(Math.Abs(result.Jvps["y"].Span[(b * 32 + k) * 16 + i] - jacobian.Data[(b * 16 + i) * 32 + k]) < 1e-4, $"[{b}, {k}, {i}]");
        Close(reference.Outputs["y"], result.Outputs["y"], "y");
    }

    [Fact]
    public async Task VjpAlongTheBasisGivesJacobianRows()
    {
        var reference = Fixtures.Load("two_outputs");
        var y = reference.Outputs["mean"];
        var result = await _client.VjpAsync("two_outputs", Inputs(reference),
            new Dictionary<string, FloatTensor> { ["mean"] = ToTensor(DerivativeModeTests.Basis(y.Shape)) });
        Assert.Equal(DerivativeMode.Reverse, result.Mode);
        Close(new RefTensor([3, 3, 6], reference.Jacobians["x"]["mean"].Data), result.Vjp, "rows of dmean/dx");
        Assert.Equal(2, result.Outputs.Count);
    }

    [Fact]
    public async Task BadCotangentsSurfaceAsInvalidArgument()
    {
        var reference = Fixtures.Load("two_outputs");
        var e = await Assert.ThrowsAsync<RpcException>(() => _client.VjpAsync("two_outputs", Inputs(reference),
            new Dictionary<string, FloatTensor> { ["mean"] = new(new float[9], 3, 3) }, of: ["log_var"]));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Equal("cotangent for output 'mean', which is not in 'of' (log_var)", e.Status.Detail);
    }

    [Fact]
    public async Task OfSelectsOutputs()
    {
        var reference = Fixtures.Load("two_outputs");
        var result = await _client.BatchJacobianAsync("two_outputs", Inputs(reference), of: ["log_var"]);
        Assert.Equal(["log_var"], result.Jacobians.Keys);
        Close(reference.Jacobians["x"]["log_var"], result.Jacobians["log_var"], "log_var");
        Close(reference.Jacobians["x"]["log_var"].Sample(2), result.Jacobians["log_var"].Row(2), "log_var row 2");
    }

    [Fact]
    public async Task ListAndGetModels()
    {
        var models = await _client.ListModelsAsync();
        var pinn = Assert.Single(models, m => m.Name == "pinn");
        Assert.Equal("READY", pinn.State);
        Assert.Equal(("xt", "float"), (pinn.Inputs.Single().Name, pinn.Inputs.Single().ElementType));
        Assert.Equal([-1, 2], pinn.Inputs.Single().Shape);
        Assert.Equal([-1, 1], pinn.Outputs.Single().Shape);
        Assert.True(pinn.Opset >= 13);
        var garbage = Assert.Single(models, m => m.Name == "garbage");
        Assert.Equal("FAILED", garbage.State);
        Assert.NotEmpty(garbage.Error);
        Assert.Equal(["1", "2"], models.Where(m => m.Name == "mlp_tanh").Select(m => m.Version).Order());

        Assert.Equal("2", (await _client.GetModelAsync("mlp_tanh")).Version);
        Assert.Equal("1", (await _client.GetModelAsync("mlp_tanh", version: "1")).Version);
    }

    [Fact]
    public async Task ServerErrorsKeepTheirStatusAndMessage()
    {
        var reference = Fixtures.Load("pinn");
        var notFound = await Assert.ThrowsAsync<RpcException>(() => _client.PredictAsync("no_such_model", Inputs(reference)));
        Assert.Equal(StatusCode.NotFound, notFound.StatusCode);
        Assert.Contains("model 'no_such_model' not found", notFound.Status.Detail);

        var badWrt = await Assert.ThrowsAsync<RpcException>(() => _client.BatchJacobianAsync("pinn", Inputs(reference), wrt: "nope"));
        Assert.Equal(StatusCode.InvalidArgument, badWrt.StatusCode);
        Assert.Contains("unknown wrt 'nope'", badWrt.Status.Detail);
    }

    [Fact]
    public async Task RegisteredThroughClientFactory()
    {
        var services = new ServiceCollection();
        services.AddJacServiceClient(o =>
        {
            o.Address = new Uri($"http://{server.Target}");
            o.Timeout = TimeSpan.FromSeconds(20);
        });
        await using var provider = services.BuildServiceProvider();
        var client = provider.GetRequiredService<JacServiceClient>();

        var reference = Fixtures.Load("pinn");
        var result = await client.BatchJacobianAsync("pinn", Inputs(reference));
        Close(reference.Jacobians["xt"]["u"], result.Jacobians["u"], "pinn du/dxt");
        Assert.Contains(await client.ListModelsAsync(), m => m.Name == "pinn");
    }

    [Fact]
    public async Task ATimeoutTooShortForTheCallIsDeadlineExceeded()
    {
        // A microsecond passes before the request leaves the client: the channel itself gives DEADLINE_EXCEEDED.
        var e = await Assert.ThrowsAsync<RpcException>(() => _client.ListModelsAsync(timeout: TimeSpan.FromTicks(10)));
        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
    }
}
