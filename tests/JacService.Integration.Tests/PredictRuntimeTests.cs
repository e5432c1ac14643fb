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

    /// <summary>
    /// Batching:IntraOpThreads sets ONNX Runtime's threads per run too, not libtorch's alone: each session keeps a pool of
    /// the threads beside the caller's. Two servers without warm-up, the same fixtures, counted in /proc.
    /// </summary>
    [Fact]
    public async Task IntraOpThreadsReachOnnxRuntimesSessions()
    {
        await using var one = new ServerProcess { ExtraArgs = ["--Models:Warmup=false"] };
        await using var four = new ServerProcess { ExtraArgs = ["--Models:Warmup=false", "--Batching:IntraOpThreads=4"] };
        await Task.WhenAll(one.InitializeAsync(), four.InitializeAsync());
        int models = (await one.Client.ListModelsAsync(new ListModelsRequest())).Models.Count(m => m.PredictRuntime == "onnxruntime");
        int threadsOfOne = Threads(one), threadsOfFour = Threads(four);
        // Three more threads per Predict session, give or take the thread pool's own.
        Assert.True(threadsOfFour - threadsOfOne >= 2 * models, $"{threadsOfOne} threads with one per run, {threadsOfFour} with four; {models} Predict sessions");
        await PredictMatchesTheReference(four, "pinn");
    }

    private static int Threads(ServerProcess server) => Directory.GetDirectories($"/proc/{server.ProcessId}/task").Length;

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
