using JacService.Client;
using JacService.Protos.V1;
using JacService.Testing;
using static JacService.Integration.Tests.ClientTesting;

namespace JacService.Integration.Tests;

/// <summary>
/// Engine:Device on a machine without a GPU: auto is the CPU, said at start and by GetModel, and CUDA graphs are off;
/// cpu named explicitly changes nothing.
/// </summary>
[Collection(ServerCollection.Name)]
public class ComputeDeviceTests(ServerProcess server)
{
    [Fact]
    public async Task AutoIsTheCpuHereAndGetModelSaysSo()
    {
        await server.WaitForLog("Tensors live on cpu (Engine:Device auto; GPUs visible to libtorch: 0)");
        var models = await server.Client.ListModelsAsync(new ListModelsRequest());
        // The repository also holds broken models, FAILED without parameters anywhere.
        var ready = models.Models.Where(m => m.State == "READY").ToList();
        Assert.Contains(ready, m => m.Name == "mlp_tanh");
        Assert.All(ready, m => Assert.Equal("cpu", m.Device));
        // Engine:CudaGraphs auto: off on the CPU, said at start and per version, nothing recorded.
        await server.WaitForLog("CUDA graphs off (Engine:CudaGraphs Auto): the device is the CPU");
        Assert.All(ready, m => Assert.Equal((false, "the device is the CPU", 0, 0),
            (m.CudaGraphs.Enabled, m.CudaGraphs.Note, m.CudaGraphs.Recorded, m.CudaGraphs.Fallbacks.Count)));
        Assert.All(models.Models.Where(m => m.State == "FAILED"), m => Assert.Equal("", m.Device));
        // One replica, on the CPU, which ran every batch.
        Assert.All(ready, m =>
        {
            var replica = Assert.Single(m.Batching.Devices);
            Assert.Equal(("cpu", m.Batching.Batches, m.Batching.Rows), (replica.Device, replica.Batches, replica.Rows));
        });
    }

    /// <summary>
    /// Two servers of their own, which differ in Engine:Device alone. Each serves a batch size by the compiled graph or
    /// the interpreter, whichever timed faster when that size first came (Engine:CalibrateAuto); on a loaded machine two
    /// servers can choose differently and round differently (a CI run saw it against the shared server), so both take
    /// the graph.
    /// </summary>
    [Fact]
    public async Task NamingTheCpuGivesTheSameFloatsBitForBit()
    {
        string[] same = ["--Models:Warmup=false", "--Engine:CalibrateAuto=false"];
        await using var cpu = new ServerProcess { ExtraArgs = ["--Engine:Device=cpu", .. same] };
        await using var automatic = new ServerProcess { ExtraArgs = ["--Engine:Device=auto", .. same] };
        await Task.WhenAll(cpu.InitializeAsync(), automatic.InitializeAsync());
        var reference = Fixtures.Load("mlp_tanh");
        foreach (var mode in new[] { DerivativeMode.Forward, DerivativeMode.Reverse })
        {
            var named = await ClientFor(cpu).BatchJacobianAsync("mlp_tanh", Inputs(reference), mode: mode);
            var auto = await ClientFor(automatic).BatchJacobianAsync("mlp_tanh", Inputs(reference), mode: mode);
            Assert.True(named.Jacobians["y"].ContentEquals(auto.Jacobians["y"]), $"{mode}: Engine:Device=cpu differs from auto");
            Close(reference.Jacobians["x"]["y"], named.Jacobians["y"], $"{mode} dy/dx");
        }
    }
}
