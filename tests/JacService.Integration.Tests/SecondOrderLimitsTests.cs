using Grpc.Core;
using JacService.Client;
using JacService.Protos.V1;
using JacService.Testing;
using static JacService.Integration.Tests.SecondOrder;

namespace JacService.Integration.Tests;

/// <summary>
/// Second derivatives against the size limit and the micro-batcher's splitting. Its own server: a 1 MiB result limit (so
/// a few dozen mlp_tanh Hessians are over it) and batches of at most 2 rows (so a request of 5 runs as 2 + 2 + 1),
/// compared with the shared server, which runs the same request as one batch.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class SecondOrderLimitsTests(ServerProcess unsplit, SecondOrderLimitsTests.SmallServer fixture)
    : IClassFixture<SecondOrderLimitsTests.SmallServer>
{
    private const int MaxBatchSize = 2;
    private readonly ServerProcess _server = fixture.Server;

    public sealed class SmallServer : IAsyncLifetime
    {
        public ServerProcess Server { get; } = new() { ExtraArgs = ["--Limits:MaxResponseMiB=1", $"--Batching:MaxBatchSize={MaxBatchSize}"] };

        public Task InitializeAsync() => Server.InitializeAsync();
        public Task DisposeAsync() => Server.DisposeAsync();
    }

    private static Tensor Rows(int rows, int width) =>
        Tensors.Create(Enumerable.Range(0, rows * width).Select(i => (float)Math.Sin(0.37 * i)).ToArray(), rows, width);

    /// <summary>20 samples x (16 outputs + 16 x 32 x 32 Hessian entries) x 4 bytes = 1,312,000 bytes, over 1 MiB.</summary>
    [Fact]
    public async Task AHessianOverTheLimitIsResourceExhaustedNamingItsSize()
    {
        var request = new BatchHessianRequest { Model = "mlp_tanh", Inputs = { ["x"] = Rows(20, 32) } };
        var e = await Assert.ThrowsAsync<RpcException>(() => _server.Client.BatchHessianAsync(request).ResponseAsync);
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        Assert.Contains("the Hessian result would take 1,312,000 bytes (20 samples x 16,400 floats), over the limit of 1,048,576", e.Status.Detail);

        // The Jacobians count too: 16 x 32 more floats per sample.
        request.IncludeJacobian = true;
        e = await Assert.ThrowsAsync<RpcException>(() => _server.Client.BatchHessianAsync(request).ResponseAsync);
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        Assert.Contains("(20 samples x 16,912 floats)", e.Status.Detail);
    }

    /// <summary>A Laplacian does not grow with wrt's size: the batch whose Hessian is refused above is served.</summary>
    [Fact]
    public async Task TheLaplacianOfABatchWhoseHessianIsTooLargeIsServed()
    {
        var request = new BatchLaplacianRequest { Model = "mlp_tanh", Inputs = { ["x"] = Rows(20, 32) }, IncludeJacobian = true };
        var response = await _server.Client.BatchLaplacianAsync(request);
        Assert.Equal([20L, 16], response.Laplacians["y"].Shape);
        Assert.Equal([20L, 16, 32], response.Jacobians["y"].Shape);
    }

    public static TheoryData<string, int> SplitCases => new() { { "pinn", 2 }, { "mlp_tanh", 32 } };

    /// <summary>
    /// 5 rows in batches of 2 come back as the 5 rows of one batch: each part's Hessians, Laplacians and Jacobians in
    /// their place. Batches of other sizes round differently, so the comparison is to float32 rounding, not bitwise.
    /// </summary>
    [Theory]
    [MemberData(nameof(SplitCases))]
    public async Task ARequestSplitAcrossBatchesGivesWhatOneBatchGives(string name, int width)
    {
        const int rows = 5;
        string input = name == "pinn" ? "xt" : "x", output = name == "pinn" ? "u" : "y";
        var hessianRequest = new BatchHessianRequest { Model = name, Inputs = { [input] = Rows(rows, width) }, IncludeJacobian = true };
        var laplacianRequest = new BatchLaplacianRequest { Model = name, Inputs = { [input] = Rows(rows, width) }, Axes = { 1 }, IncludeJacobian = true };

        var before = (await _server.Client.GetModelAsync(new GetModelRequest { Model = name })).Batching;
        var split = await _server.Client.BatchHessianAsync(hessianRequest);
        var splitLaplacian = await _server.Client.BatchLaplacianAsync(laplacianRequest);
        var after = (await _server.Client.GetModelAsync(new GetModelRequest { Model = name })).Batching;
        var whole = await unsplit.Client.BatchHessianAsync(hessianRequest);
        var wholeLaplacian = await unsplit.Client.BatchLaplacianAsync(laplacianRequest);

        // Each call ran as ceil(5 / 2) = 3 batches.
        Assert.Equal(2 * 3, after.Batches - before.Batches);
        Assert.Equal(2 * rows, after.Rows - before.Rows);
        foreach (var (what, got, expected) in new[]
                 {
                     ("Hessians", split.Hessians[output], whole.Hessians[output]),
                     ("Hessian's Jacobians", split.Jacobians[output], whole.Jacobians[output]),
                     ("outputs", split.Outputs[output], whole.Outputs[output]),
                     ("Laplacians", splitLaplacian.Laplacians[output], wholeLaplacian.Laplacians[output]),
                     ("Laplacian's Jacobians", splitLaplacian.Jacobians[output], wholeLaplacian.Jacobians[output]),
                 })
        {
            Assert.Equal(expected.Shape, got.Shape);
            Assert.Equal(rows, got.Shape[0]);
            Close(expected.Data.Select(v => (double)v).ToList(), got.Data, 1e-5, Math.Max(MaxAbs(expected.Data), 1e-30), $"{name} {what}, split against whole");
        }
    }
}
