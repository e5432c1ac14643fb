using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>Predict is served by ONNX Runtime, or by the engine when told to; both answer like the reference.</summary>
[Collection(ServerCollection.Name)]
public class PredictRuntimeTests(ServerProcess server)
{
    [Fact]
    public async Task OnnxRuntimeServesPredictByDefault()
    {
        var info = await server.Client.GetModelAsync(new GetModelRequest { Model = "pinn" });
        Assert.Equal(("onnxruntime", ""), (info.PredictRuntime, info.PredictRuntimeNote));
        await PredictMatchesTheReference(server, "pinn");
    }

    [Fact]
    public async Task TheEngineServesPredictWhenOnnxRuntimeIsOff()
    {
        await using var engine = new ServerProcess { ExtraArgs = ["--Engine:PredictWithOnnxRuntime=false", "--Models:Warmup=false"] };
        await engine.InitializeAsync();
        var info = await engine.Client.GetModelAsync(new GetModelRequest { Model = "pinn" });
        Assert.Equal(("engine", ""), (info.PredictRuntime, info.PredictRuntimeNote));
        await PredictMatchesTheReference(engine, "pinn");
    }

    private static async Task PredictMatchesTheReference(ServerProcess target, string model)
    {
        var reference = Fixtures.Load(model);
        var request = new PredictRequest { Model = model };
        foreach (var (name, t) in reference.Inputs) request.Inputs[name] = ServingTests.ToProto(t);
        var response = await target.Client.PredictAsync(request);
        foreach (var (name, expected) in reference.Outputs)
            Compare.Close(expected, response.Outputs[name].Shape.ToArray(), response.Outputs[name].Data, 1e-4, $"{model}.{name}");
    }
}
