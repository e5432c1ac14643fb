using System.Diagnostics;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>
/// The Open Inference Protocol from another language: Python grpcio with stubs generated from the protocol's .proto
/// alone (tests/clients/python/check_oip.py), against the fixtures' references.
/// </summary>
[Collection(ServerCollection.Name)]
public class PythonOipClientTests(ServerProcess server)
{
    [Fact]
    public async Task PythonOipClientGetsTheReferenceNumbers()
    {
        var start = new ProcessStartInfo("/usr/bin/python3")
        {
            ArgumentList =
            {
                Path.Combine(Fixtures.Root, "tests", "clients", "python", "check_oip.py"), "--target", server.Target,
                "--fixtures", Path.Combine(Fixtures.Root, "tests", "fixtures"), "--proto", Path.Combine(Fixtures.Root, "src", "Protos"),
            },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var python = Process.Start(start)!;
        var stdout = python.StandardOutput.ReadToEndAsync();
        var stderr = python.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await python.WaitForExitAsync(timeout.Token);
        Assert.True(python.ExitCode == 0, $"python OIP client failed ({python.ExitCode}):\n{await stdout}\n{await stderr}");
        Assert.Contains("PASS pinn ModelInfer jacobian wrt xt", await stdout);
        Assert.Contains(", 0 failed", await stdout);
    }
}
