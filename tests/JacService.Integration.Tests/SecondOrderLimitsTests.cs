using Grpc.Core;
using JacService.Client;
using JacService.Protos.V1;
using JacService.Testing;
using static JacService.Integration.Tests.SecondOrder;

namespace JacService.Integration.Tests;

/// <summary>
/// Results against the size limit (second derivatives', Predict's outputs) and the micro-batcher's splitting. Its own server: a 1 MiB result limit (so
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

    /// <summary>
    /// Predict's outputs are sized before any work too, through JacobianService and the Open Inference Protocol alike:
    /// 2,100 rows of conv_decoder send 269 KB and would answer 2,100 x 128 floats, 1,075,200 bytes. A decoder's outputs
    /// may be thousands of times its inputs; before the check, 128 KB sent to one made the server take 5 GB.
    /// </summary>
    [Fact]
    public async Task PredictOutputsOverTheLimitAreResourceExhaustedNamingTheirSize()
    {
        const string expected = "the outputs would take 1,075,200 bytes (2100 samples x 128 floats), over the limit of 1,048,576; send fewer samples per request";
        static Tensor Latents(int rows) => Tensors.Create(Enumerable.Range(0, rows * 32).Select(i => (float)Math.Sin(0.37 * i)).ToArray(), rows, 2, 4, 4);
        var x = Latents(2100);
        var e = await Assert.ThrowsAsync<RpcException>(() => _server.Client.PredictAsync(new PredictRequest { Model = "conv_decoder", Inputs = { ["x"] = x } }).ResponseAsync);
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        Assert.Equal(expected, e.Status.Detail);

        var oip = new Protos.Inference.GRPCInferenceService.GRPCInferenceServiceClient(_server.Channel);
        var infer = new Protos.Inference.ModelInferRequest { ModelName = "conv_decoder" };
        infer.Inputs.Add(new Protos.Inference.ModelInferRequest.Types.InferInputTensor
        {
            Name = "x", Datatype = "FP32", Shape = { 2100, 2, 4, 4 }, Contents = new() { Fp32Contents = { x.Data } },
        });
        e = await Assert.ThrowsAsync<RpcException>(() => oip.ModelInferAsync(infer).ResponseAsync);
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        Assert.Equal(expected, e.Status.Detail);

        // JacService's client retries RESOURCE_EXHAUSTED, but not this: the answer's negative retry pushback says no retry
        // cures it, so the server sees the call once.
        Assert.Equal("-1", e.Trailers.GetValue("grpc-retry-pushback-ms"));
        // (The exporter caches a scrape briefly: each count is waited for. No other test here sends conv_decoder a Predict.)
        Assert.Equal(1, await PredictsRefused(atLeast: 1));
        var client = ClientTesting.ClientFor(_server);
        e = await Assert.ThrowsAsync<RpcException>(() => client.PredictAsync("conv_decoder",
            new Dictionary<string, FloatTensor> { ["x"] = FloatTensor.FromProto(x) }));
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        // Every attempt has been answered by now, so the first count past 1 is the last.
        Assert.Equal(2, await PredictsRefused(atLeast: 2));

        // 2,048 rows, 1,048,576 bytes, are served.
        var served = await _server.Client.PredictAsync(new PredictRequest { Model = "conv_decoder", Inputs = { ["x"] = Latents(2048) } });
        Assert.Equal([2048L, 128], served.Outputs["y"].Shape);
    }

    /// <summary>conv_decoder's Predicts answered RESOURCE_EXHAUSTED, read once the count reaches <paramref name="atLeast"/> (or 10 s pass).</summary>
    private async Task<double> PredictsRefused(double atLeast)
    {
        using var http = new HttpClient();
        double count = 0;
        for (var deadline = DateTime.UtcNow.AddSeconds(10); count < atLeast && DateTime.UtcNow < deadline; await Task.Delay(100))
        {
            var samples = PrometheusText.Parse(await http.GetStringAsync($"http://127.0.0.1:{_server.MetricsPort}/metrics"));
            count = samples.Where(s => s.Name == "jacservice_requests_total" && s.Labels.GetValueOrDefault("model") == "conv_decoder"
                && s.Labels.GetValueOrDefault("method") == "Predict" && s.Labels.GetValueOrDefault("status") == "RESOURCE_EXHAUSTED").Sum(s => s.Value);
        }
        return count;
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
