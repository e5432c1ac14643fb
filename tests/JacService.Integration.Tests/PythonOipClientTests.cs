using System.Diagnostics;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>
/// The Open Inference Protocol from another language, against the fixtures' references: its gRPC binding from Python
/// grpcio with stubs generated from the protocol's .proto alone (tests/clients/python/check_oip.py), and its HTTP/REST
/// binding from Python's standard library, urllib and json (check_oip_rest.py).
/// </summary>
[Collection(ServerCollection.Name)]
public class PythonOipClientTests(ServerProcess server)
{
    private static string Fixture(params string[] path) => Path.Combine([Fixtures.Root, .. path]);

    [Fact]
    public async Task PythonOipClientGetsTheReferenceNumbers()
    {
        var stdout = await Run("check_oip.py", "--target", server.Target, "--fixtures", Fixture("tests", "fixtures"), "--proto", Fixture("src", "Protos"));
        Assert.Contains("PASS pinn ModelInfer jacobian wrt xt", stdout);
    }

    [Fact]
    public async Task PythonRestClientGetsTheReferenceNumbers()
    {
        var stdout = await Run("check_oip_rest.py", "--url", $"http://127.0.0.1:{server.RestPort}", "--fixtures", Fixture("tests", "fixtures"));
        Assert.Contains("PASS pinn infer jacobian wrt xt", stdout);
        Assert.Contains("PASS two_inputs infer jacobian wrt z, binary tensor data", stdout);
        Assert.Contains("PASS error: values short of the shape", stdout);
    }

    /// <summary>The script's standard output, once it has exited 0 having passed every check.</summary>
    private static async Task<string> Run(string script, params string[] args)
    {
        var start = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Fixture("tests", "clients", "python", script));
        foreach (var arg in args) start.ArgumentList.Add(arg);
        using var python = Process.Start(start)!;
        var stdout = python.StandardOutput.ReadToEndAsync();
        var stderr = python.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await python.WaitForExitAsync(timeout.Token);
        Assert.True(python.ExitCode == 0, $"{script} failed ({python.ExitCode}):\n{await stdout}\n{await stderr}");
        Assert.Contains(", 0 failed", await stdout);
        return await stdout;
    }
}
