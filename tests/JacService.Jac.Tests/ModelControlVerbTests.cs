using System.Text.Json;
using System.Text.RegularExpressions;
using JacService.Integration.Tests;
using JacService.Protos.V1;

namespace JacService.Jac.Tests;

/// <summary>
/// jac models --watch against a server that polls its repository, and jac control against one with ModelControl on
/// (and against the default server, where it is off).
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class ModelControlVerbTests(ServerProcess defaultServer, PollingControlServer control) : IClassFixture<PollingControlServer>
{
    private string Target => control.Server.Target;

    private static string NewName(string prefix) => prefix + "_" + Guid.NewGuid().ToString("N")[..8];

    [Fact]
    public async Task Models_watch_prints_each_version_as_it_appears_changes_state_and_goes()
    {
        var name = NewName("watched");
        control.AddModel(name);
        await WaitUntilReady(name, "1");

        await using var watch = LiveJac.Start("models", "--watch", "-t", Target, "-m", name, "--interval", "100ms");
        await watch.WaitForAsync(new Regex($@"Z  {name}  version 1  listed\s+READY\n"));

        // A new version folder, marked complete: the next poll loads it.
        var v2 = Path.Combine(control.Server.RepositoryRoot, name, "2");
        Directory.CreateDirectory(v2);
        File.Copy(Testing.Fixtures.ModelPath("mlp_tanh"), Path.Combine(v2, "model.onnx"));
        File.WriteAllText(Path.Combine(v2, "COMPLETE"), "");
        await watch.WaitForAsync(new Regex($@"\d\d:\d\d:\d\d\.\d\d\dZ  {name}  version 2  (appeared  READY|changed   LOADING -> READY)\n"));

        Directory.Delete(Path.Combine(control.Server.RepositoryRoot, name, "1"), recursive: true);
        await watch.WaitForAsync(new Regex($@"Z  {name}  version 1  gone      \(was READY\)\n"));

        // Ctrl-C (the cancellation System.CommandLine raises on SIGINT) ends the watch with exit code 0.
        Assert.Equal(0, await watch.StopAsync());
        Assert.DoesNotContain("version 2  listed", watch.Out);
        Assert.Equal("", watch.Err);
    }

    [Fact]
    public async Task Models_watch_in_json_follows_an_unload_and_a_load_through_jac_control()
    {
        var name = NewName("toggled");
        control.AddModel(name);
        await WaitUntilReady(name, "1");
        await using var watch = LiveJac.Start("models", "--watch", "-o", "json", "-t", Target, "-m", name, "--interval", "100ms");
        await watch.WaitForAsync(new Regex("\"change\":\"listed\""));

        var unload = await JacRunner.RunAsync("control", "unload", name, "-t", Target, "--token-file", control.TokenFile);
        Assert.True(unload.ExitCode == 0, unload.Err);
        Assert.Equal($"{name}: retired version 1; calls already holding one finish on it\n", unload.Out);
        await watch.WaitForAsync(new Regex("\"change\":\"gone\""));

        var load = await JacRunner.RunAsync("control", "load", name, "-t", Target, "--token-file", control.TokenFile);
        Assert.True(load.ExitCode == 0, load.Err);
        Assert.Matches($@"{name}\s+│ 1\s+│ READY", load.Out);
        // The listing may have caught the load half way (appeared LOADING, then changed to READY).
        await watch.WaitForAsync(new Regex("\"change\":\"(appeared|changed)\",\"state\":\"READY\""));
        Assert.Equal(0, await watch.StopAsync());

        var changes = watch.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.All(changes, c => Assert.Equal((name, "1"), (c.GetProperty("model").GetString(), c.GetProperty("version").GetString())));
        Assert.All(changes, c => Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", c.GetProperty("time").GetString()));
        Assert.Equal(["listed", "gone", "appeared"], changes.Select(c => c.GetProperty("change").GetString()).Take(3));
        Assert.Equal(("READY", ""), (changes[1].GetProperty("previous_state").GetString(), changes[1].GetProperty("state").GetString()));
        Assert.Equal("READY", changes[^1].GetProperty("state").GetString());
    }

    [Fact]
    public async Task Models_watch_for_a_duration_ends_by_itself()
    {
        var r = await JacRunner.RunAsync("models", "--watch", "-t", Target, "-m", "mlp_tanh", "--interval", "100ms", "--for", "700ms");
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Matches(@"Z  mlp_tanh  version 1  listed\s+READY\n", r.Out);
        Assert.Matches(@"Z  mlp_tanh  version 2  listed\s+READY\n", r.Out);
        Assert.DoesNotContain("appeared", r.Out);
    }

    [Fact]
    public async Task Control_repository_load_and_unload_with_the_token_from_the_variable()
    {
        var name = NewName("controlled");
        control.AddModel(name);
        var before = Environment.GetEnvironmentVariable(ControlVerbs.TokenVariable);
        Environment.SetEnvironmentVariable(ControlVerbs.TokenVariable, control.Token);
        try
        {
            var load = await JacRunner.RunAsync("control", "load", name, "-t", Target, "-o", "json");
            Assert.True(load.ExitCode == 0, load.Err);
            var loaded = LoadModelResponse.Parser.ParseJson(load.Out);
            Assert.Equal((name, "1", "READY"), (loaded.Model.Name, loaded.Model.Versions.Single().Version, loaded.Model.Versions.Single().State));

            var unload = await JacRunner.RunAsync("control", "unload", name, "-t", Target, "-o", "json");
            Assert.True(unload.ExitCode == 0, unload.Err);
            Assert.Equal(["1"], UnloadModelResponse.Parser.ParseJson(unload.Out).Versions);

            var list = await JacRunner.RunAsync("control", "repository", "-t", Target, "-o", "json");
            Assert.True(list.ExitCode == 0, list.Err);
            var models = ListRepositoryResponse.Parser.ParseJson(list.Out).Models;
            var unloaded = models.Single(m => m.Name == name);
            Assert.True(unloaded.Unloaded);
            Assert.Equal(("NOT_LOADED", NotLoadedReason.Unloaded), (unloaded.Versions.Single().State, unloaded.Versions.Single().NotLoaded));
            Assert.Equal(["READY", "READY"], models.Single(m => m.Name == "mlp_tanh").Versions.Select(v => v.State));

            var table = await JacRunner.RunAsync("control", "repository", "-m", name, "-t", Target);
            Assert.True(table.ExitCode == 0, table.Err);
            Assert.Matches($@"{name} \(unloaded\)\s+│ 1\s+│ NOT_LOADED\s+│ 0\s+│ unloaded through ModelControl", table.Out);
        }
        finally
        {
            Environment.SetEnvironmentVariable(ControlVerbs.TokenVariable, before);
        }
    }

    [Fact]
    public async Task Control_load_of_a_model_that_fails_exits_with_1_and_shows_why()
    {
        var name = NewName("broken");
        Directory.CreateDirectory(Path.Combine(control.Server.RepositoryRoot, name, "1"));
        File.WriteAllBytes(Path.Combine(control.Server.RepositoryRoot, name, "1", "model.onnx"), [1, 2, 3, 4, 5, 6, 7, 8]);
        var r = await JacRunner.RunAsync("control", "load", name, "-t", Target, "--token", control.Token);
        Assert.Equal(1, r.ExitCode);
        Assert.Matches($@"{name}\s+│ 1\s+│ FAILED", r.Out);
        Assert.Equal($"jac: {name}: version 1 FAILED to load\n", r.Err);
    }

    [Fact]
    public async Task Control_without_the_right_token_or_the_service_says_what_to_do()
    {
        var before = Environment.GetEnvironmentVariable(ControlVerbs.TokenVariable);
        Environment.SetEnvironmentVariable(ControlVerbs.TokenVariable, null);
        try
        {
            var none = await JacRunner.RunAsync("control", "repository", "-t", Target);
            Assert.Equal(1, none.ExitCode);
            Assert.Contains("jac control needs the server's ModelControl token: --token-file FILE", none.Err);

            var wrongToken = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
            var wrong = await JacRunner.RunAsync("control", "unload", "mlp_tanh", "-t", Target, "--token", wrongToken);
            Assert.Equal(1, wrong.ExitCode);
            Assert.Equal("jac: the server refused the token: it is not the server's ModelControl token (from --token-file, JAC_CONTROL_TOKEN or --token)\n", wrong.Err);
            Assert.Equal("READY", (await control.Server.Client.GetModelAsync(new GetModelRequest { Model = "mlp_tanh" })).State);

            var both = await JacRunner.RunAsync("control", "repository", "-t", Target, "--token", wrongToken, "--token-file", control.TokenFile);
            Assert.Equal("jac: give --token or --token-file, not both\n", both.Err);

            var missing = await JacRunner.RunAsync("control", "load", "no_such_model", "-t", Target, "--token-file", control.TokenFile);
            Assert.Equal(1, missing.ExitCode);
            Assert.StartsWith("jac: model 'no_such_model' not found at http://" + Target, missing.Err);

            var off = await JacRunner.RunAsync("control", "repository", "-t", defaultServer.Target, "--token-file", control.TokenFile);
            Assert.Equal(1, off.ExitCode);
            Assert.Contains("has no ModelControl service: it is off unless the server runs with ModelControl:Enabled=true", off.Err);
        }
        finally
        {
            Environment.SetEnvironmentVariable(ControlVerbs.TokenVariable, before);
        }
    }

    private async Task WaitUntilReady(string model, string version)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try
            {
                if ((await control.Server.Client.GetModelAsync(new GetModelRequest { Model = model, Version = version })).State == "READY") return;
            }
            catch (Grpc.Core.RpcException e) when (e.StatusCode == Grpc.Core.StatusCode.NotFound)
            {
                // Not polled in yet.
            }
            Assert.True(DateTime.UtcNow < deadline, $"{model} version {version} not READY within 30 s");
            await Task.Delay(50);
        }
    }

    /// <summary>jac running in-process in the background, its output readable while it runs.</summary>
    private sealed class LiveJac : IAsyncDisposable
    {
        private readonly StringWriter _out = new(), _err = new();
        private readonly TextWriter _syncOut, _syncErr;
        private readonly CancellationTokenSource _ctrlC = new();
        private readonly Task<int> _exit;

        private LiveJac(string[] args)
        {
            _syncOut = TextWriter.Synchronized(_out);
            _syncErr = TextWriter.Synchronized(_err);
            _exit = Task.Run(() => JacApp.RunAsync(args, new Io(_syncOut, _syncErr), _ctrlC.Token));
        }

        public static LiveJac Start(params string[] args) => new(args);

        // The synchronized writers lock themselves around each write.
        public string Out
        {
            get { lock (_syncOut) return _out.ToString(); }
        }

        public string Err
        {
            get { lock (_syncErr) return _err.ToString(); }
        }

        public async Task WaitForAsync(Regex expected)
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (!expected.IsMatch(Out))
            {
                Assert.False(_exit.IsCompleted, $"jac ended before printing {expected}:\n{Out}\n{Err}");
                Assert.True(DateTime.UtcNow < deadline, $"jac did not print {expected} within 30 s:\n{Out}\n{Err}");
                await Task.Delay(50);
            }
        }

        public async Task<int> StopAsync()
        {
            await _ctrlC.CancelAsync();
            return await _exit.WaitAsync(TimeSpan.FromSeconds(30));
        }

        public async ValueTask DisposeAsync()
        {
            if (!_exit.IsCompleted) await StopAsync();
            _ctrlC.Dispose();
        }
    }
}
