using Grpc.Core;
using Grpc.Reflection.V1Alpha;
using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>
/// ModelControl on the real server: absent by default; with a token, loading a folder added after start, unloading
/// (calls queued on the model finish on it), loading again, and the token and name checks. Outputs are compared with
/// the same file served as mlp_tanh, and with the fixture's reference.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class ModelControlTests(ServerProcess defaultServer, ControlServer control) : IClassFixture<ControlServer>
{
    private static readonly Reference Mlp = Fixtures.Load("mlp_tanh");

    private static string NewName(string prefix) => prefix + "_" + Guid.NewGuid().ToString("N")[..8];

    [Fact]
    public async Task Off_by_default_it_is_neither_listed_nor_callable()
    {
        Assert.DoesNotContain("jacservice.v1.ModelControl", await ReflectedServices(defaultServer));
        var e = await Assert.ThrowsAsync<RpcException>(() =>
            new ModelControl.ModelControlClient(defaultServer.Channel).ListRepositoryAsync(new ListRepositoryRequest(), control.Auth).ResponseAsync);
        Assert.Equal(StatusCode.Unimplemented, e.StatusCode);

        Assert.Contains("jacservice.v1.ModelControl", await ReflectedServices(control.Server));
    }

    [Fact]
    public async Task Load_serves_a_folder_added_after_start_unload_retires_it_and_load_serves_it_again()
    {
        var name = NewName("added");
        control.AddModel(name);
        var before = await Repository(name);
        Assert.Equal(("1", "NOT_LOADED", NotLoadedReason.NotPolled), Single(before));
        await AssertNotFound(() => control.Server.Client.PredictAsync(PredictRows(name, 0, 1, 2)).ResponseAsync);

        var loaded = await control.Control.LoadModelAsync(new LoadModelRequest { Model = name }, control.Auth);
        Assert.Equal(name, loaded.Model.Name);
        Assert.Equal(("1", "READY", NotLoadedReason.Unspecified), Single(loaded.Model));
        Assert.False(loaded.Model.Unloaded);
        await AssertServesLikeMlpTanh(name);

        var unloaded = await control.Control.UnloadModelAsync(new UnloadModelRequest { Model = name }, control.Auth);
        Assert.Equal(["1"], unloaded.Versions);
        await AssertNotFound(() => control.Server.Client.PredictAsync(PredictRows(name, 0)).ResponseAsync);
        await AssertNotFound(() => control.Server.Client.GetModelAsync(new GetModelRequest { Model = name }).ResponseAsync);
        var after = await Repository(name);
        Assert.True(after.Unloaded);
        Assert.Equal(("1", "NOT_LOADED", NotLoadedReason.Unloaded), Single(after));
        Assert.Contains("unloaded through ModelControl", after.Versions.Single().Reason);
        // Unloading what is already unloaded retires nothing and is no error.
        Assert.Empty((await control.Control.UnloadModelAsync(new UnloadModelRequest { Model = name }, control.Auth)).Versions);

        var again = await control.Control.LoadModelAsync(new LoadModelRequest { Model = name }, control.Auth);
        Assert.Equal(("1", "READY", NotLoadedReason.Unspecified), Single(again.Model));
        Assert.False(again.Model.Unloaded);
        await AssertServesLikeMlpTanh(name);

        await control.Server.WaitForLog($"ModelControl loaded {name} in ");
        await control.Server.WaitForLog($"ModelControl unloaded {name} in ");
        Assert.DoesNotContain(control.Token, control.Server.Log);
    }

    [Fact]
    public async Task List_repository_shows_every_folder_with_its_state_or_why_it_is_not_loaded()
    {
        var partial = NewName("partial");
        control.AddModel(partial);
        Directory.CreateDirectory(Path.Combine(control.Server.RepositoryRoot, partial, "2"));
        var latest = NewName("latest_one");
        control.AddModel(latest, versions: [1, 2], config: """{ "versionPolicy": { "latest": 1 } }""");
        await control.Control.LoadModelAsync(new LoadModelRequest { Model = latest }, control.Auth);

        var models = (await control.Control.ListRepositoryAsync(new ListRepositoryRequest(), control.Auth)).Models;
        Assert.Equal(models.Select(m => m.Name).Order(StringComparer.Ordinal), models.Select(m => m.Name));
        RepositoryModel Model(string n) => models.Single(m => m.Name == n);

        Assert.Equal(["1", "2"], Model("mlp_tanh").Versions.Select(v => v.Version));
        Assert.All(Model("mlp_tanh").Versions, v => Assert.Equal(("READY", true), (v.State, v.FolderPresent)));
        Assert.Equal("all", Model("mlp_tanh").VersionPolicy);
        Assert.Equal("FAILED", Model("missing_file").Versions.Single().State);
        Assert.Contains("model.onnx not found", Model("missing_file").Versions.Single().Reason);
        Assert.Contains("unknown batching setting 'colour'", Model("config_unknown_key").ConfigError);

        var p = Model(partial);
        Assert.Equal(("1", "NOT_LOADED", NotLoadedReason.NotPolled), (p.Versions[0].Version, p.Versions[0].State, p.Versions[0].NotLoaded));
        Assert.Equal(("2", "NOT_LOADED", NotLoadedReason.NoModelFile), (p.Versions[1].Version, p.Versions[1].State, p.Versions[1].NotLoaded));
        Assert.Contains("Models:PollSeconds is 0", p.Versions[0].Reason);

        var l = Model(latest);
        Assert.Equal("latest 1", l.VersionPolicy);
        Assert.Equal(("1", "NOT_LOADED", NotLoadedReason.OutsidePolicy), (l.Versions[0].Version, l.Versions[0].State, l.Versions[0].NotLoaded));
        Assert.Equal(("2", "READY"), (l.Versions[1].Version, l.Versions[1].State));

        // An explicit load does not wait for files: a version folder without model.onnx is tried, and FAILED with why.
        var loaded = (await control.Control.LoadModelAsync(new LoadModelRequest { Model = partial }, control.Auth)).Model;
        Assert.Equal(["READY", "FAILED"], loaded.Versions.Select(v => v.State));
        Assert.Contains("model.onnx not found", loaded.Versions[1].Reason);
    }

    [Fact]
    public async Task Every_call_needs_the_token()
    {
        var name = NewName("guarded");
        control.AddModel(name);
        var wrong = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        var calls = new Func<Metadata?, Task>[]
        {
            h => control.Control.LoadModelAsync(new LoadModelRequest { Model = name }, h).ResponseAsync,
            h => control.Control.UnloadModelAsync(new UnloadModelRequest { Model = "mlp_tanh" }, h).ResponseAsync,
            h => control.Control.ListRepositoryAsync(new ListRepositoryRequest(), h).ResponseAsync,
        };
        foreach (var call in calls)
        {
            foreach (var headers in new Metadata?[] { null, [new("authorization", "Basic " + control.Token)], [new("authorization", "Bearer ")] })
            {
                var e = await Assert.ThrowsAsync<RpcException>(() => call(headers));
                Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
                Assert.Contains("authorization: Bearer <token>", e.Status.Detail);
            }
            foreach (var token in new[] { wrong, control.Token[..^1], control.Token + "0", "tooshort" })
            {
                var e = await Assert.ThrowsAsync<RpcException>(() => call([new("authorization", "Bearer " + token)]));
                Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
                Assert.DoesNotContain(token, e.Status.Detail);
                Assert.DoesNotContain(control.Token, e.Status.Detail);
            }
        }
        // Nothing refused was done: the folder is still not loaded and mlp_tanh still serves.
        Assert.Equal("NOT_LOADED", (await Repository(name)).Versions.Single().State);
        Assert.Equal("READY", (await control.Server.Client.GetModelAsync(new GetModelRequest { Model = "mlp_tanh" })).State);
        // The scheme is case-insensitive (RFC 9110).
        await control.Control.ListRepositoryAsync(new ListRepositoryRequest { Model = "mlp_tanh" }, [new("authorization", "bearer " + control.Token)]);

        await control.Server.WaitForLog("Refused /jacservice.v1.ModelControl/LoadModel from ");
        await control.Server.WaitForLog("a bearer token that is not the server's");
        Assert.DoesNotContain(control.Token, control.Server.Log);
        Assert.DoesNotContain(wrong, control.Server.Log);
    }

    [Theory]
    [InlineData("../x")]
    [InlineData("..")]
    [InlineData(".")]
    [InlineData("mlp_tanh/1")]
    [InlineData("/etc")]
    [InlineData("")]
    public async Task A_name_that_is_not_one_folder_under_the_root_is_invalid(string name)
    {
        foreach (var call in new Func<Task>[]
        {
            () => control.Control.LoadModelAsync(new LoadModelRequest { Model = name }, control.Auth).ResponseAsync,
            () => control.Control.UnloadModelAsync(new UnloadModelRequest { Model = name }, control.Auth).ResponseAsync,
        })
        {
            var e = await Assert.ThrowsAsync<RpcException>(call);
            Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
            Assert.Contains("a model name is the name of one folder in the repository", e.Status.Detail);
        }
    }

    [Fact]
    public async Task A_missing_model_is_not_found()
    {
        await AssertNotFound(() => control.Control.LoadModelAsync(new LoadModelRequest { Model = "no_such_model" }, control.Auth).ResponseAsync);
        await AssertNotFound(() => control.Control.UnloadModelAsync(new UnloadModelRequest { Model = "no_such_model" }, control.Auth).ResponseAsync);
        await AssertNotFound(() => control.Control.ListRepositoryAsync(new ListRepositoryRequest { Model = "no_such_model" }, control.Auth).ResponseAsync);
    }

    [Fact]
    public async Task Unload_lets_the_calls_queued_on_the_model_finish_on_it()
    {
        // Every call waits the whole delay for company (adaptiveDelay off): long enough to unload while all are queued
        // on a busy 2-core machine.
        var name = NewName("slow");
        control.AddModel(name, config: """{ "batching": { "maxQueueDelayMicroseconds": 3000000, "adaptiveDelay": false } }""");
        Assert.Equal("READY", (await control.Control.LoadModelAsync(new LoadModelRequest { Model = name }, control.Auth)).Model.Versions.Single().State);

        int[] rows = [0, 1, 2, 0, 1, 2];
        var calls = rows.Select(r => control.Server.Client.PredictAsync(PredictRows(name, r)).ResponseAsync).ToList();
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while ((await control.Server.Client.GetModelAsync(new GetModelRequest { Model = name })).Batching.QueuedRows < rows.Length)
        {
            Assert.True(DateTime.UtcNow < deadline, "the calls never all queued");
            await Task.Delay(20);
        }

        var unloaded = await control.Control.UnloadModelAsync(new UnloadModelRequest { Model = name }, control.Auth);
        Assert.Equal(["1"], unloaded.Versions);
        Assert.All(calls, c => Assert.False(c.IsCompleted, "a call finished before the unload; the delay did not hold them"));
        await AssertNotFound(() => control.Server.Client.PredictAsync(PredictRows(name, 0)).ResponseAsync);

        var answers = await Task.WhenAll(calls);
        // The six rows ran as one batch of six; the same rows in one call to the same file give the same numbers.
        var together = await control.Server.Client.PredictAsync(PredictRows("mlp_tanh", rows));
        var expected = together.Outputs["y"].Data;
        int per = expected.Count / rows.Length;
        for (int i = 0; i < rows.Length; i++)
        {
            Assert.Equal(name, answers[i].Model);
            Assert.Equal([1, per], answers[i].Outputs["y"].Shape);
            Assert.Equal(expected.Skip(i * per).Take(per), answers[i].Outputs["y"].Data);
            Compare.Close(Mlp.Outputs["y"].Sample(rows[i]) with { Shape = [1, per] },
                [.. answers[i].Outputs["y"].Shape], answers[i].Outputs["y"].Data, 1e-4, $"row {rows[i]}");
        }
        await control.Server.WaitForLog($"Retiring {name} version 1: unloaded through ModelControl; {rows.Length} calls still hold it");
        // Freed after its last call.
        await control.Server.WaitForLog($"Freed {name} version 1 ", seconds: 20);
    }

    [Theory]
    [InlineData(new[] { "--ModelControl:Enabled=true" }, "ModelControl: Enabled needs the bearer token its callers must present")]
    [InlineData(new[] { "--ModelControl:Enabled=true", "--ModelControl:Token=short-but-secret-1234" }, "ModelControl: Token is shorter than 32 characters")]
    [InlineData(new[] { "--ModelControl:Enabled=true", "--ModelControl:Token=0123456789abcdef0123456789abcdef", "--ModelControl:TokenFile=/etc/hostname" }, "set one of Token and TokenFile, not both")]
    [InlineData(new[] { "--ModelControl:Enabled=true", "--ModelControl:TokenFile=/nonexistent/jac-token" }, "ModelControl: TokenFile '/nonexistent/jac-token' cannot be read")]
    [InlineData(new[] { "--ModelControl:Enabled=true", "--ModelControl:Token=0123456789abcdef 0123456789abcdef" }, "must be visible ASCII characters without spaces")]
    public async Task A_bad_setting_stops_the_start_with_a_message_that_names_it(string[] args, string message)
    {
        await using var server = new ServerProcess { ExtraArgs = args };
        await Assert.ThrowsAsync<InvalidOperationException>(server.InitializeAsync);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await server.WaitForExitAsync(timeout.Token);
        Assert.Contains(message, server.Log);
        Assert.DoesNotContain("short-but-secret-1234", server.Log);
    }

    [Fact]
    public async Task An_empty_token_file_stops_the_start()
    {
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, "\n");
            await using var server = new ServerProcess { ExtraArgs = ["--ModelControl:Enabled=true", $"--ModelControl:TokenFile={file}"] };
            await Assert.ThrowsAsync<InvalidOperationException>(server.InitializeAsync);
            await server.WaitForLog($"ModelControl: TokenFile '{file}' is empty");
        }
        finally
        {
            File.Delete(file);
        }
    }

    private async Task AssertServesLikeMlpTanh(string name)
    {
        var served = await control.Server.Client.PredictAsync(PredictRows(name, 0, 1, 2));
        var reference = await control.Server.Client.PredictAsync(PredictRows("mlp_tanh", 0, 1, 2));
        Assert.Equal((name, "1"), (served.Model, served.Version));
        Assert.Equal(reference.Outputs["y"].Shape, served.Outputs["y"].Shape);
        Assert.Equal(reference.Outputs["y"].Data, served.Outputs["y"].Data);
        Compare.Close(Mlp.Outputs["y"], [.. served.Outputs["y"].Shape], served.Outputs["y"].Data, 1e-4, name);
    }

    private static PredictRequest PredictRows(string model, params int[] rows)
    {
        var x = Mlp.Inputs["x"];
        var data = rows.SelectMany(r => x.Sample(r).Floats).ToArray();
        var request = new PredictRequest { Model = model, Version = model == "mlp_tanh" ? "1" : "" };
        request.Inputs["x"] = JacService.Client.Tensors.Create(data, [rows.Length, .. x.Shape[1..]]);
        return request;
    }

    private async Task<RepositoryModel> Repository(string name) =>
        (await control.Control.ListRepositoryAsync(new ListRepositoryRequest { Model = name }, control.Auth)).Models.Single();

    private static (string, string, NotLoadedReason) Single(RepositoryModel model)
    {
        var v = model.Versions.Single();
        return (v.Version, v.State, v.NotLoaded);
    }

    private static async Task AssertNotFound(Func<Task> call)
    {
        var e = await Assert.ThrowsAsync<RpcException>(call);
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
    }

    private static async Task<List<string>> ReflectedServices(ServerProcess server)
    {
        using var call = new ServerReflection.ServerReflectionClient(server.Channel).ServerReflectionInfo();
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = "" });
        await call.RequestStream.CompleteAsync();
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        return call.ResponseStream.Current.ListServicesResponse.Service.Select(s => s.Name).ToList();
    }
}
