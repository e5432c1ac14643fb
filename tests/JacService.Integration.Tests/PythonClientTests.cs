using System.Diagnostics;
using System.Text.Json.Nodes;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>A real client in another language: Python grpcio with stubs generated from our .proto.</summary>
[Collection(ServerCollection.Name)]
public class PythonClientTests(ServerProcess server)
{
    private static readonly string FixturesDir = Path.Combine(Fixtures.Root, "tests", "fixtures");

    [Fact]
    public async Task PythonClientGetsTheReferenceNumbers()
    {
        var (exitCode, stdout, stderr) = await CheckServer(FixturesDir);
        Assert.True(exitCode == 0, $"python client failed ({exitCode}):\n{stdout}\n{stderr}");
        Assert.Contains("PASS", stdout);
    }

    [Fact]
    public async Task AReferenceModelTheServerDoesNotServeFailsTheCheck()
    {
        // The fixtures with one more reference, for a model the server does not have.
        var fixtures = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), $"jacservice-refs-{Guid.NewGuid():N}")).FullName;
        try
        {
            var references = Directory.CreateDirectory(Path.Combine(fixtures, "reference")).FullName;
            var reference = JsonNode.Parse(File.ReadAllText(Path.Combine(FixturesDir, "reference", "mlp_tanh.json")))!;
            File.WriteAllText(Path.Combine(references, "mlp_tanh.json"), reference.ToJsonString());
            reference["model"] = "not_served";
            File.WriteAllText(Path.Combine(references, "not_served.json"), reference.ToJsonString());

            var (exitCode, stdout, stderr) = await CheckServer(fixtures);

            Assert.True(exitCode == 1, $"python client should fail ({exitCode}):\n{stdout}\n{stderr}");
            Assert.Contains("FAIL not_served is READY: states not listed", stdout);
            Assert.Contains("PASS mlp_tanh", stdout); // the served one is still checked
        }
        finally
        {
            Directory.Delete(fixtures, recursive: true);
        }
    }

    private async Task<(int ExitCode, string Stdout, string Stderr)> CheckServer(string fixtures)
    {
        var script = Path.Combine(Fixtures.Root, "tests", "clients", "python", "check_server.py");
        var start = new ProcessStartInfo("/usr/bin/python3")
        {
            ArgumentList =
            {
                script, "--target", server.Target,
                "--fixtures", fixtures,
                "--proto", Path.Combine(Fixtures.Root, "src", "Protos"),
            },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var python = Process.Start(start)!;
        var stdout = python.StandardOutput.ReadToEndAsync();
        var stderr = python.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await python.WaitForExitAsync(timeout.Token);
        return (python.ExitCode, await stdout, await stderr);
    }
}
