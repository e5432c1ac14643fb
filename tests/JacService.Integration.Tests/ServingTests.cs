using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>Every fixture model over gRPC, against torch / functorch float64 references.</summary>
[Collection(ServerCollection.Name)]
public class ServingTests(ServerProcess server)
{
    private const double Tolerance = 1e-4;

    public static TheoryData<string> Models => new(Fixtures.Names);

    internal static Tensor ToProto(RefTensor t) => JacService.Client.Tensors.Create(t.Floats, t.Shape);

    [Theory]
    [MemberData(nameof(Models))]
    public async Task Predict(string name)
    {
        var reference = Fixtures.Load(name);
        var request = new PredictRequest { Model = name };
        foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ToProto(t);
        var response = await server.Client.PredictAsync(request);
        Assert.Equal(name, response.Model);
        Assert.Equal((await server.Client.GetModelAsync(new GetModelRequest { Model = name })).Version, response.Version);
        foreach (var (output, expected) in reference.Outputs)
            Compare.Close(expected, response.Outputs[output].Shape.ToArray(), response.Outputs[output].Data, Tolerance, $"{name}.{output}");
    }

    [Theory]
    [MemberData(nameof(Models))]
    public Task BatchJacobian(string name) => BatchJacobiansMatch(name, name);

    /// <summary>The served <paramref name="model"/>'s BatchJacobians of every wrt against <paramref name="fixture"/>'s references.</summary>
    private async Task BatchJacobiansMatch(string model, string fixture)
    {
        var reference = Fixtures.Load(fixture);
        foreach (var (wrt, perOutput) in reference.Jacobians)
        {
            var request = new BatchJacobianRequest { Model = model, Wrt = wrt };
            foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ToProto(t);
            var response = await server.Client.BatchJacobianAsync(request);
            foreach (var (output, expected) in perOutput)
                Compare.Close(expected, response.Jacobians[output].Shape.ToArray(), response.Jacobians[output].Data, Tolerance, $"{model} d{output}/d{wrt}");
            foreach (var (output, expected) in reference.Outputs)
                Compare.Close(expected, response.Outputs[output].Shape.ToArray(), response.Outputs[output].Data, Tolerance, $"{model}.{output}");
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public async Task JacobianOfEachSample(string name)
    {
        var reference = Fixtures.Load(name);
        long batch = reference.Inputs.Values.First().Shape[0];
        foreach (var (wrt, perOutput) in reference.Jacobians)
            for (int b = 0; b < batch; b++)
            {
                var request = new JacobianRequest { Model = name, Wrt = wrt };
                foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ToProto(t.Sample(b));
                var response = await server.Client.JacobianAsync(request);
                foreach (var (output, expected) in perOutput)
                    Compare.Close(expected.Sample(b), response.Jacobians[output].Shape.ToArray(), response.Jacobians[output].Data, Tolerance,
                        $"{name} sample {b} d{output}/d{wrt}");
                foreach (var (output, expected) in reference.Outputs)
                    Compare.Close(expected.Sample(b), response.Outputs[output].Shape.ToArray(), response.Outputs[output].Data, Tolerance,
                        $"{name} sample {b} {output}");
            }
    }

    /// <summary>A model at opset 20 (torch 1.13's export, rewritten as a later exporter writes it) serves its fixture's references.</summary>
    [Fact]
    public async Task ALaterOpsetServesTheSameDerivatives()
    {
        var info = await server.Client.GetModelAsync(new GetModelRequest { Model = ServerProcess.LaterOpsetModel });
        Assert.Equal("READY", info.State);
        Assert.Equal(20, info.Opset);
        await BatchJacobiansMatch(ServerProcess.LaterOpsetModel, "mixed_activations");
    }

    [Fact]
    public async Task OfSelectsOutputs()
    {
        var reference = Fixtures.Load("two_outputs");
        var request = new BatchJacobianRequest { Model = "two_outputs", Of = { "log_var" } };
        foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ToProto(t);
        var response = await server.Client.BatchJacobianAsync(request);
        Assert.Equal(["log_var"], response.Jacobians.Keys);
        Assert.Equal(2, response.Outputs.Count);
        var expected = reference.Jacobians.Values.Single()["log_var"];
        Compare.Close(expected, response.Jacobians["log_var"].Shape.ToArray(), response.Jacobians["log_var"].Data, Tolerance, "log_var");
        Compare.Close(expected.Sample(1), [3, 6], JacService.Client.Tensors.Row(response.Jacobians["log_var"], 1), Tolerance, "log_var row 1");
    }

    [Fact]
    public async Task EmptyVersionMeansLatest()
    {
        var info = await server.Client.GetModelAsync(new GetModelRequest { Model = "mlp_tanh" });
        Assert.Equal("2", info.Version);
        var reference = Fixtures.Load("mlp_tanh");
        var request = new PredictRequest { Model = "mlp_tanh", Version = "1" };
        foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ToProto(t);
        Assert.Equal("1", (await server.Client.PredictAsync(request)).Version);
        request.Version = "";
        Assert.Equal("2", (await server.Client.PredictAsync(request)).Version);
    }
}
