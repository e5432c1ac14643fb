using System.Diagnostics;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>A real client in another language: Python grpcio with stubs generated from our .proto.</summary>
[Collection(ServerCollection.Name)]
public class PythonClientTests(ServerProcess server)
{
    [Fact]
    public async Task PythonClientGetsTheReferenceNumbers()
    {
        var script = Path.Combine(Fixtures.Root, "tests", "clients", "python", "check_server.py");
        var start = new ProcessStartInfo("/usr/bin/python3")
        {
            ArgumentList =
            {
                script, "--target", server.Target,
                "--fixtures", Path.Combine(Fixtures.Root, "tests", "fixtures"),
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
        Assert.True(python.ExitCode == 0, $"python client failed ({python.ExitCode}):\n{await stdout}\n{await stderr}");
        Assert.Contains("PASS", await stdout);
    }
}
