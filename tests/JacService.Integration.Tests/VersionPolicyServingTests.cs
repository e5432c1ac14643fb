using Grpc.Core;
using JacService.Protos.V1;

namespace JacService.Integration.Tests;

/// <summary>Only the versions a model's policy (or the server's) names are loaded and served.</summary>
public class VersionPolicyServingTests
{
    [Fact]
    public async Task EachModelServesTheVersionsItsPolicyNames()
    {
        await using var server = new ServerProcess
        {
            // The server's default policy (latest 1) applies to every model without one of its own.
            ExtraArgs = ["--Models:VersionPolicy:Latest=1", "--Models:Warmup=false"],
            PrepareRepository = root =>
            {
                foreach (var (model, policy) in new[] { ("latest_two", """{ "latest": 2 }"""), ("pinned", """{ "specific": [1, 5] }"""), ("every", """{ "all": true }""") })
                {
                    foreach (var v in new[] { 1, 2, 3 })
                    {
                        var folder = Path.Combine(root, model, v.ToString());
                        Directory.CreateDirectory(folder);
                        File.Copy(Path.Combine(root, "mlp_tanh", "1", "model.onnx"), Path.Combine(folder, "model.onnx"));
                    }
                    File.WriteAllText(Path.Combine(root, model, "config.json"), $$"""{ "versionPolicy": {{policy}} }""");
                }
            },
        };
        await server.InitializeAsync();
        var listed = (await server.Client.ListModelsAsync(new ListModelsRequest())).Models;
        string[] Versions(string model) => listed.Where(m => m.Name == model).Select(m => m.Version).Order().ToArray();

        Assert.Equal(["2", "3"], Versions("latest_two"));
        Assert.Equal(["1"], Versions("pinned"));
        Assert.Equal(["1", "2", "3"], Versions("every"));
        // mlp_tanh has versions 1 and 2 in the test repository and no policy of its own.
        Assert.Equal(["2"], Versions("mlp_tanh"));
        await server.WaitForLog("Not loading latest_two version 1: outside its version policy (latest 2)");
        await server.WaitForLog("pinned has no version 5, which its version policy (specific [1, 5]) names");

        var e = await Assert.ThrowsAsync<RpcException>(() => server.Client.GetModelAsync(new GetModelRequest { Model = "latest_two", Version = "1" }).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
    }

    [Fact]
    public async Task ABadServerPolicyStopsTheStart()
    {
        await using var server = new ServerProcess { ExtraArgs = ["--Models:VersionPolicy:Latest=1", "--Models:VersionPolicy:All=true"] };
        await Assert.ThrowsAsync<InvalidOperationException>(server.InitializeAsync);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await server.WaitForExitAsync(timeout.Token);
        Assert.Contains("Models:VersionPolicy: a version policy sets one of latest", server.Log);
    }
}
