using Grpc.Core;
using Grpc.Health.V1;
using JacService.Protos.V1;
using JacService.Testing;
using ServingStatus = Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus;

namespace JacService.Integration.Tests;

/// <summary>
/// A running server follows its repository (Models:PollSeconds): versions added while it serves load and take over,
/// removed ones retire, a file caught mid-copy waits instead of failing, a broken new version leaves the old one
/// serving, and config.json changes reload. Health answers per model throughout.
/// </summary>
public class PollingTests(PollingServer fixture) : IClassFixture<PollingServer>
{
    private ServerProcess Server => fixture.Server;
    private string Root => Server.RepositoryRoot;
    private static readonly byte[] MlpBytes = File.ReadAllBytes(Path.Combine(Fixtures.ModelsDir, "mlp_tanh", "1", "model.onnx"));
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private string AddVersion(string model, int version, byte[]? bytes = null, bool marker = false)
    {
        var folder = Path.Combine(Root, model, version.ToString());
        Directory.CreateDirectory(folder);
        File.WriteAllBytes(Path.Combine(folder, "model.onnx"), bytes ?? MlpBytes);
        if (marker) File.WriteAllBytes(Path.Combine(folder, "COMPLETE"), []);
        return folder;
    }

    private async Task<ModelInfo?> Info(string model, string version = "")
    {
        try
        {
            return await Server.Client.GetModelAsync(new GetModelRequest { Model = model, Version = version });
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return null;
        }
    }

    private async Task<ModelInfo?> WaitFor(string model, string version, Func<ModelInfo?, bool> condition)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (DateTime.UtcNow < deadline)
        {
            var info = await Info(model, version);
            if (condition(info)) return info;
            await Task.Delay(50);
        }
        throw new TimeoutException($"{model} version '{version}' never reached the expected state:\n{Server.Log}");
    }

    private async Task<PredictResponse> Predict(string model, string version = "") =>
        await Server.Client.PredictAsync(new PredictRequest { Model = model, Version = version, Inputs = { ["x"] = Input } });

    private static readonly Protos.V1.Tensor Input = ServingTests.ToProto(Fixtures.Load("mlp_tanh").Inputs["x"]);

    private async Task<ServingStatus?> Health(string service)
    {
        try
        {
            return (await new Health.HealthClient(Server.Channel).CheckAsync(new HealthCheckRequest { Service = service })).Status;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return null;
        }
    }

    /// <summary>
    /// Health is published on the thread that changed the registry, just after the change: GetModel can see a version
    /// come or go a moment before Check does, so a test that just saw GetModel change waits for health too.
    /// </summary>
    private async Task AssertHealthBecomes(string service, ServingStatus? expected)
    {
        var deadline = DateTime.UtcNow + Patience;
        var seen = await Health(service);
        while (seen != expected && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
            seen = await Health(service);
        }
        Assert.Equal(expected, seen);
    }

    [Fact]
    public async Task AnAddedVersionLoadsTakesOverAndRetiresWhenRemoved()
    {
        var reference = await Predict("mlp_tanh", "1");
        AddVersion("added", 1);
        var first = await WaitFor("added", "", i => i?.State == "READY");
        Assert.Equal("1", first!.Version);
        await AssertHealthBecomes("added", ServingStatus.Serving);

        var folder = AddVersion("added", 2);
        await WaitFor("added", "", i => i?.Version == "2" && i.State == "READY");
        var answer = await Predict("added");
        Assert.Equal("2", answer.Version);
        // The same file as mlp_tanh: the same numbers.
        Assert.Equal(reference.Outputs["y"].Data, answer.Outputs["y"].Data);
        var history = (await Info("added", "2"))!.History;
        Assert.Equal(["LOADING", "READY"], history.Select(h => h.State));

        Directory.Delete(folder, recursive: true);
        await WaitFor("added", "2", i => i is null);
        Assert.Equal("1", (await Predict("added")).Version);
        await Server.WaitForLog("Retiring added version 2: its version folder was removed");
        await WaitFor("added", "", _ => Server.Log.Contains("Freed added version 2"));

        // Counted as a load of each version and a retirement (metrics are exported every second or so: wait for them).
        await WaitFor("added", "", _ =>
        {
            var samples = PrometheusText.Parse(new HttpClient().GetStringAsync($"http://127.0.0.1:{Server.MetricsPort}/metrics").Result);
            return samples.Any(m => m.Name == "jacservice_model_retirements_total" && m.Labels.GetValueOrDefault("model") == "added" && m.Value == 1)
                && samples.Any(m => m.Name == "jacservice_model_loads_total" && m.Labels.GetValueOrDefault("model") == "added" && m.Value == 2);
        });

        Directory.Delete(Path.Combine(Root, "added"), recursive: true);
        await WaitFor("added", "", i => i is null);
        await AssertHealthBecomes("added", null);
        var e = await Assert.ThrowsAsync<RpcException>(() => Predict("added"));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        // The server as a whole still serves.
        Assert.Equal(ServingStatus.Serving, await Health(""));
    }

    [Fact]
    public async Task ABrokenNewVersionLeavesThePreviousServingAndIsRetriedWhenItChanges()
    {
        AddVersion("broken_next", 1);
        await WaitFor("broken_next", "", i => i?.State == "READY");
        var folder = AddVersion("broken_next", 2, Enumerable.Range(0, 4096).Select(i => (byte)(i * 31 % 251)).ToArray());
        var failed = await WaitFor("broken_next", "2", i => i?.State == "FAILED");
        Assert.Contains("not an ONNX model", failed!.Error);
        // Latest is the highest READY version: 1 keeps serving, and the model stays healthy.
        Assert.Equal("1", (await Predict("broken_next")).Version);
        Assert.Equal(ServingStatus.Serving, await Health("broken_next"));

        // The fixed file replaces the broken one: the version is tried again and takes over.
        File.WriteAllBytes(Path.Combine(folder, "model.onnx"), MlpBytes);
        await WaitFor("broken_next", "2", i => i?.State == "READY");
        Assert.Equal("2", (await Predict("broken_next")).Version);
        Assert.Equal(["LOADING", "FAILED", "LOADING", "READY"], (await Info("broken_next", "2"))!.History.Select(h => h.State));
    }

    [Fact]
    public async Task AFileCopiedInSlowlyIsNeverReportedFailedAndServesOnceComplete()
    {
        var folder = Path.Combine(Root, "slow_copy", "1");
        Directory.CreateDirectory(folder);
        var seen = new List<string>();
        using var stop = new CancellationTokenSource();
        var watcher = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                if (await Info("slow_copy") is { } info) lock (seen) seen.Add(info.State);
                await Task.Delay(20);
            }
        });
        // Sixty pieces, one every 20 ms: the file changes within every 0.2 s poll interval for 1.2 s, six intervals.
        // A copy that stalls for a whole interval is taken as finished (the COMPLETE marker is the way to avoid that),
        // so the writer is a thread of its own with blocking writes and sleeps: as async continuations on the thread
        // pool, its pieces waited behind the rest of the suite on a busy CI machine, past a poll interval.
        var writer = new Thread(() =>
        {
            using var file = new FileStream(Path.Combine(folder, "model.onnx"), FileMode.CreateNew);
            int piece = (MlpBytes.Length + 59) / 60;
            for (int offset = 0; offset < MlpBytes.Length; offset += piece)
            {
                file.Write(MlpBytes, offset, Math.Min(piece, MlpBytes.Length - offset));
                file.Flush();
                Thread.Sleep(20);
            }
        }) { IsBackground = true, Priority = ThreadPriority.AboveNormal };
        writer.Start();
        await Task.Run(writer.Join);
        await WaitFor("slow_copy", "", i => i?.State == "READY");
        stop.Cancel();
        await watcher;
        lock (seen) Assert.DoesNotContain("FAILED", seen);
        Assert.Equal("1", (await Predict("slow_copy")).Version);
        Assert.DoesNotContain("slow_copy version 1 failed", Server.Log);
    }

    [Fact]
    public async Task TheCompleteMarkerTakesAFolderAtTheNextPoll()
    {
        AddVersion("marked", 1, marker: true);
        var info = await WaitFor("marked", "", i => i?.State == "READY");
        Assert.Equal("1", info!.Version);
    }

    [Fact]
    public async Task AConfigChangeReloadsTheVersionsAsNewSnapshots()
    {
        AddVersion("configured", 1);
        var before = await WaitFor("configured", "", i => i?.State == "READY");
        Assert.Equal(DerivativeMode.Auto, before!.DefaultMode);
        var reference = await Predict("configured");

        File.WriteAllText(Path.Combine(Root, "configured", "config.json"), """{ "derivativeMode": "reverse" }""");
        var after = await WaitFor("configured", "1", i => i?.DefaultMode == DerivativeMode.Reverse);
        Assert.Equal("READY", after!.State);
        Assert.Equal("reloaded: config.json changed", after.History.Last().Note);
        Assert.Equal(reference.Outputs["y"].Data, (await Predict("configured")).Outputs["y"].Data);

        // A config.json the server refuses: the snapshot that serves keeps serving, and says why it was not replaced.
        File.WriteAllText(Path.Combine(Root, "configured", "config.json"), """{ "derivativeMode": "sideways" }""");
        var refused = await WaitFor("configured", "1", i => i?.Error.Contains("a reload failed") == true);
        Assert.Equal("READY", refused!.State);
        Assert.Equal(DerivativeMode.Reverse, refused.DefaultMode);
        Assert.Contains("sideways", refused.Error);
        Assert.Equal("1", (await Predict("configured")).Version);
    }

    [Fact]
    public async Task HealthWatchSeesAModelArriveLoadAndServe()
    {
        using var watch = new Health.HealthClient(Server.Channel).Watch(new HealthCheckRequest { Service = "watched" });
        var statuses = new List<ServingStatus>();
        Assert.True(await watch.ResponseStream.MoveNext(CancellationToken.None));
        statuses.Add(watch.ResponseStream.Current.Status);
        AddVersion("watched", 1);
        using var timeout = new CancellationTokenSource(Patience);
        while (statuses[^1] != ServingStatus.Serving && await watch.ResponseStream.MoveNext(timeout.Token))
            statuses.Add(watch.ResponseStream.Current.Status);
        // Unknown before its folder exists, not serving while it loads and warms up, then serving.
        Assert.Equal([ServingStatus.ServiceUnknown, ServingStatus.NotServing, ServingStatus.Serving], statuses);
        // A model whose only version failed is known but not serving; one never seen is unknown.
        Assert.Equal(ServingStatus.NotServing, await Health("garbage"));
        Assert.Null(await Health("no_such_model"));
        Assert.Equal(ServingStatus.Serving, await Health("jacservice.v1.JacobianService"));
    }
}
