using System.Diagnostics;
using JacService.Testing;
using Xunit.Abstractions;

namespace JacService.Integration.Tests;

/// <summary>
/// examples/pinn/heat_residual.py against the real server: the heat equation's residual u_t − κ u_xx of the served
/// `pinn` from one BatchLaplacian (axes [0], with the Jacobian) and one BatchHessian, checked by the example against a
/// float64 functorch reference it builds from the ONNX file. A reference built from a perturbed copy of the file must
/// make it fail, so a passing run means the check really compared numbers.
/// </summary>
[Collection(ServerCollection.Name)]
public class PinnExampleTests(ServerProcess server, ITestOutputHelper output)
{
    private static readonly string Example = Path.Combine(Fixtures.Root, "examples", "pinn");

    private static readonly Lazy<Task<ExampleProcess.Result>> Stubs = new(() => ExampleProcess.Run("bash", [Path.Combine(Example, "generate.sh")]));

    [Fact]
    public async Task HeatResidualMatchesTheFloat64Reference()
    {
        // The model file the test server serves (ServerProcess copies tests/fixtures/models), so both sides see one model.
        var result = await RunExample("--target", server.Target, "--onnx", Fixtures.ModelPath("pinn"));

        Assert.True(result.ExitCode == 0, $"heat_residual.py failed:\n{result}");
        Assert.Contains("BatchLaplacian pinn: 561 points, axes [0] (x), include_jacobian: u[561, 1], u_xx[561, 1], du/dxt[561, 1, 2]", result.Stdout);
        Assert.Contains("BatchHessian pinn: d2u/dxt2[561, 1, 2, 2]", result.Stdout);
        Assert.Contains("heat residual r = u_t - 0.1 u_xx on 33 x 17 collocation points", result.Stdout);
        foreach (var compared in new[] { "u", "du/dxt", "u_xx (BatchLaplacian, axes [0])", "d2u/dxt2 (BatchHessian)", "residual u_t - kappa u_xx" })
            Assert.Contains($"match {compared}: max abs error", result.Stdout);
        Assert.Contains("PASS: u, du/dxt, u_xx, the Hessian and the heat residual of pinn at 561 points match the float64 reference", result.Stdout);
        Assert.DoesNotContain("MISMATCH", result.Stdout);
    }

    [Fact]
    public async Task HeatResidualFailsAgainstAPerturbedModel()
    {
        // The head's bias moved by 0.01: u shifts by ~0.6 % and every derivative by ~0.5 %, ~50x the tolerance, while
        // the server still serves the original. The served values still agree with each other (Hessian vs Laplacian).
        var perturbed = Path.Combine(Path.GetTempPath(), $"jacservice-pinn-perturbed-{Guid.NewGuid():N}.onnx");
        var write = await ExampleProcess.Run("/usr/bin/python3", ["-c", """
            import sys, onnx, onnx.numpy_helper as nh
            m = onnx.load(sys.argv[1])
            for i, t in enumerate(m.graph.initializer):
                if t.name == "head.bias":
                    m.graph.initializer[i].CopyFrom(nh.from_array(nh.to_array(t) + 0.01, t.name))
            onnx.save(m, sys.argv[2])
            """, Fixtures.ModelPath("pinn"), perturbed]);
        Assert.True(write.ExitCode == 0, $"writing the perturbed model failed:\n{write}");
        try
        {
            var result = await RunExample("--target", server.Target, "--onnx", perturbed);

            Assert.True(result.ExitCode == 1, $"heat_residual.py should exit 1 on a mismatch:\n{result}");
            Assert.Contains("MISMATCH u: max abs error", result.Stdout);
            Assert.Contains("MISMATCH u_xx (BatchLaplacian, axes [0]): max abs error", result.Stdout);
            Assert.Contains("match BatchHessian's u_xx vs BatchLaplacian's", result.Stdout);
            Assert.Contains("FAIL: ", result.Stdout);
        }
        finally
        {
            File.Delete(perturbed);
        }
    }

    private async Task<ExampleProcess.Result> RunExample(params string[] args)
    {
        var stubs = await Stubs.Value;
        output.WriteLine($"generating the Python stubs: exit {stubs.ExitCode} in {stubs.Elapsed.TotalSeconds:F2} s");
        Assert.True(stubs.ExitCode == 0, $"generating the Python stubs failed:\n{stubs}");
        var result = await ExampleProcess.Run("/usr/bin/python3", [Path.Combine(Example, "heat_residual.py"), .. args]);
        output.WriteLine($"heat_residual.py {string.Join(' ', args)}: exit {result.ExitCode} in {result.Elapsed.TotalSeconds:F2} s");
        output.WriteLine(result.Stdout);
        output.WriteLine(result.Stderr);
        return result;
    }
}
