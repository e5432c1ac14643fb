using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>Each version is sent a few requests of its own before the server reports SERVING.</summary>
public class WarmupTests
{
    [Fact]
    public async Task EveryVersionIsWarmedUpBeforeTheServerIsServingAndLeavesNoTraffic()
    {
        // The delay is fixed at 10 s: warm-up calls must not wait for company, or SERVING would take minutes.
        await using var server = new ServerProcess { ExtraArgs = ["--Batching:AdaptiveDelay=false", "--Batching:MaxQueueDelayMicroseconds=10000000"] };
        await server.InitializeAsync();
        var models = await server.Client.ListModelsAsync(new ListModelsRequest());
        foreach (var model in models.Models.Where(m => m.State == "READY"))
        {
            string warmedUp = $"Warmed up {model.Name} version {model.Version} in", skipped = $"Warm-up of {model.Name} version {model.Version} skipped";
            await Waiting.Until(() => Task.FromResult(server.Log.Contains(warmedUp) || server.Log.Contains(skipped)), $"{model.Name}: no warm-up logged", server);
            bool warmed = server.Log.Contains(warmedUp);
            // The warm-up's calls are not traffic: no batches in the stats.
            Assert.Equal(0, model.Batching.Batches);
            // GetModel says when the version became ready and what loading and warming it took.
            Assert.True(DateTimeOffset.Parse(model.LoadedAt) > DateTimeOffset.UtcNow.AddMinutes(-5), model.LoadedAt);
            Assert.True(model.LoadSeconds > 0 && (!warmed || model.WarmupSeconds > 0), $"load {model.LoadSeconds} s, warm-up {model.WarmupSeconds} s");
            // Its Jacobians made AUTO time both modes at every bucket up to 64 rows, so a caller's first Jacobian does not.
            if (warmed && model.DefaultMode == DerivativeMode.Auto)
                foreach (long rows in new[] { 1, 2, 4, 8, 16, 32, 64 })
                    Assert.Contains(model.DerivativeChoices, c => c.Batch == rows);
            // Its Predicts timed ONNX Runtime against the engine at the same sizes, and the faster serves each.
            if (warmed && model.PredictRuntime == "onnxruntime")
                Assert.Equal([1L, 2, 4, 8, 16, 32, 64], model.PredictChoices.Where(c => c.Timed && c.OnnxruntimeUs > 0 && c.EngineUs > 0
                    && c.Runtime is "onnxruntime" or "engine").Select(c => c.Batch));
        }
        // Second derivatives are warmed for PINN-sized inputs, not for a 784-pixel image (seconds of Hessian for nothing).
        var lines = server.Log.Split('\n');
        Assert.DoesNotContain("not warmed", lines.Single(l => l.Contains("Warmed up pinn version 1")));
        Assert.Contains("not warmed: second derivatives ('image' has over 64 elements", lines.Single(l => l.Contains("Warmed up small_cnn version 1")));
        var scrape = await new HttpClient().GetStringAsync($"http://127.0.0.1:{server.MetricsPort}/metrics");
        Assert.DoesNotContain("jacservice_batch_size_count{", scrape);
        // The timings stop runs that can no longer win, and ONNX Runtime logged each such run of its own as an error (5 and
        // 18 lines in two starts on the fixtures). The repository's broken models are errors of their own.
        Assert.DoesNotContain(lines, l => l.StartsWith("fail: OnnxRuntime", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AVersionThatFailsItsWarmupIsNotServed()
    {
        // Loads (a batch of one evaluates) but cannot run the warm-up's batch of two: every merged batch would fail.
        await using var server = new ServerProcess
        {
            PrepareRepository = root =>
            {
                var folder = Path.Combine(root, "batch_one_only", "1");
                Directory.CreateDirectory(folder);
                File.Copy(Path.Combine(Testing.Fixtures.Root, "tests", "fixtures", "bad", "batch_one_only", "1", "model.onnx"), Path.Combine(folder, "model.onnx"));
            },
        };
        await server.InitializeAsync();
        var info = await server.Client.GetModelAsync(new GetModelRequest { Model = "batch_one_only" });
        Assert.Equal("FAILED", info.State);
        Assert.StartsWith("warm-up failed: ", info.Error);
        Assert.Contains("reshape_to_one_sample", info.Error);
        await server.WaitForLog("batch_one_only version 1 failed its warm-up and is not served");
        // Everything else serves.
        Assert.Equal("READY", (await server.Client.GetModelAsync(new GetModelRequest { Model = "mlp_tanh" })).State);
    }

    [Fact]
    public async Task ANewVersionIsWarmedAtTheShapesItsPredecessorServed()
    {
        var fixture = Fixtures.ModelPath(ScaledVersions.Fixture);
        await using var server = new ServerProcess
        {
            // The start-up warm-up at batch 1 only, so the traffic below reaches sizes it did not warm.
            ExtraArgs = ["--Models:PollSeconds=0.2", "--Models:WarmupMaxRows=1"],
            PrepareRepository = root => ScaledVersions.Write(fixture, Path.Combine(root, "live"), 1),
        };
        await server.InitializeAsync();
        // Traffic at batch sizes the warm-up at start does not cover (it sends one-sample Jacobians): AUTO times both
        // modes for each on version 1, as it does for every size the batcher forms from callers' Jacobians under load.
        var x = Fixtures.Load(ScaledVersions.Fixture).Inputs["x"];
        foreach (int rows in new[] { 2, 3 })
            await server.Client.BatchJacobianAsync(new BatchJacobianRequest { Model = "live", Inputs = { ["x"] = ServingTests.ToProto(x.Take(rows)) } });
        var choices = (await server.Client.GetModelAsync(new GetModelRequest { Model = "live", Version = "1" })).DerivativeChoices;
        var served = choices.Select(c => (c.Wrt, string.Join(",", c.Of), c.Batch)).Order().ToList();
        Assert.Equal([1, 2, 3], served.Select(c => c.Batch));
        var timings = choices.Select(c => (c.Batch, c.Mode, c.ForwardUs, c.ReverseUs)).Order().ToList();

        ScaledVersions.Write(fixture, Path.Combine(server.RepositoryRoot, "live"), 2);
        ModelInfo? next = null;
        await Waiting.Until(async () =>
        {
            var listed = (await server.Client.ListModelsAsync(new ListModelsRequest())).Models;
            next = listed.FirstOrDefault(m => m.Name == "live" && m.Version == "2" && m.State == "READY");
            return next is not null;
        }, "version 2 did not become READY", server);
        // Version 2 had no call of its own, yet AUTO has already chosen for every size version 1 served: its first
        // batches of those sizes do not time both modes while their callers wait.
        Assert.Equal(0, next!.Batching.Batches);
        Assert.Equal(served, next.DerivativeChoices.Select(c => (c.Wrt, string.Join(",", c.Of), c.Batch)).Order());
        // Version 2 differs from version 1 in its weights only, so it took version 1's measured choices as they are
        // (the same timings to the last digit) instead of timing both modes again.
        Assert.Equal(timings, next.DerivativeChoices.Select(c => (c.Batch, c.Mode, c.ForwardUs, c.ReverseUs)).Order());
        await server.WaitForLog("live version 2 takes 3 derivative-mode choices from version 1, whose file differs in its weights only");
    }

    [Fact]
    public async Task WarmupCanBeTurnedOff()
    {
        await using var server = new ServerProcess { ExtraArgs = ["--Models:Warmup=false"] };
        await server.InitializeAsync();
        var info = await server.Client.GetModelAsync(new GetModelRequest { Model = "mlp_tanh" });
        Assert.Empty(info.DerivativeChoices);
        Assert.Equal(0, info.WarmupSeconds);
        Assert.DoesNotContain("Warmed up", server.Log);
    }
}
