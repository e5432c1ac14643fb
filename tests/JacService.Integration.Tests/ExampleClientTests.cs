using System.Diagnostics;
using System.Text.Json.Nodes;
using JacService.Testing;
using Xunit.Abstractions;

namespace JacService.Integration.Tests;

/// <summary>
/// The user-facing client examples in examples/python, examples/go, examples/cpp and examples/node, each built from the
/// .proto in the tree and run against the real server: Predict and BatchJacobian must match the functorch references,
/// and a perturbed reference must make the example fail, so a passing run means the check really compared numbers. The
/// same for examples/node/oip_rest.js ("node-rest"), which calls the REST binding in binary tensor data.
/// </summary>
[Collection(ServerCollection.Name)]
public class ExampleClientTests(ServerProcess server, ITestOutputHelper output)
{
    private static readonly string Examples = ExampleBuilds.Examples;

    public static TheoryData<string, string> LanguagesAndModels()
    {
        var data = new TheoryData<string, string>();
        foreach (var language in new[] { "python", "go", "cpp", "node", "node-rest" })
            foreach (var model in new[] { "mlp_tanh", "two_inputs", "two_outputs" })
                data.Add(language, model);
        return data;
    }

    [Theory]
    [MemberData(nameof(LanguagesAndModels))]
    public async Task ExampleMatchesTheReference(string language, string model)
    {
        var reference = ReferencePath(model);
        var result = await RunExample(language, [.. Target(language), "--reference", reference]);

        Assert.True(result.ExitCode == 0, $"{language} example failed:\n{result}");
        // Every output plus every (wrt, output) Jacobian of the reference was compared.
        var doc = JsonNode.Parse(File.ReadAllText(reference))!;
        var compared = doc["outputs"]!.AsObject().Count
            + doc["jacobians"]!.AsObject().Sum(wrt => wrt.Value!.AsObject().Count);
        Assert.Contains($"PASS: {compared} outputs and Jacobians of {model}", result.Stdout);
        if (language == "node-rest")
        {
            Assert.Contains($"infer {model} (", result.Stdout);
            Assert.Contains("ModelMetadata no_such_model: HTTP 404: model 'no_such_model' not found", result.Stdout);
        }
        else
        {
            Assert.Contains($"BatchJacobian {model}: d", result.Stdout);
            Assert.Contains("GetModel no_such_model: NOT_FOUND", result.Stdout);
        }
        Assert.DoesNotContain("MISMATCH", result.Stdout);
    }

    [Theory]
    [InlineData("python")]
    [InlineData("go")]
    [InlineData("cpp")]
    [InlineData("node")]
    [InlineData("node-rest")]
    public async Task ExampleFailsOnAPerturbedReference(string language)
    {
        // One Jacobian entry moved by 1% of the largest entry: 100 times the tolerance, everything else untouched.
        var doc = JsonNode.Parse(File.ReadAllText(ReferencePath("mlp_tanh")))!;
        var data = doc["jacobians"]!["x"]!["y"]!["data"]!.AsArray();
        var largest = data.Max(v => Math.Abs(v!.GetValue<double>()));
        data[100] = data[100]!.GetValue<double>() + 0.01 * largest;
        var perturbed = Path.Combine(Path.GetTempPath(), $"jacservice-perturbed-{language}-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(perturbed, doc.ToJsonString());
        try
        {
            var result = await RunExample(language, [.. Target(language), "--reference", perturbed]);

            Assert.True(result.ExitCode == 1, $"{language} example should exit 1 on a mismatch:\n{result}");
            Assert.Contains("MISMATCH dy/dx: max abs error", result.Stdout);
            Assert.Contains("at flat index 100,", result.Stdout);
            Assert.Contains("match y:", result.Stdout);
            Assert.Contains("FAIL: 1 problem(s)", result.Stdout);
        }
        finally
        {
            File.Delete(perturbed);
        }
    }

    [Fact]
    public async Task TheCppExampleTimesAControlLoopOfJacobians()
    {
        var result = await RunExample("cpp", [.. Target("cpp"), "--model", "pinn", "--loop", "50"]);
        Assert.True(result.ExitCode == 0, $"cpp example failed:\n{result}");
        Assert.Matches(@"Jacobian loop pinn: 50 calls one at a time \(after 5 to warm up\), p50 \d+ us, p99 \d+ us, max \d+ us", result.Stdout);
    }

    [Fact]
    public async Task PythonComparisonCatchesANaNAnywhere()
    {
        await Prepared(ExampleBuilds.PythonStubs, "generating the Python stubs");
        var result = await ExampleProcess.Run("/usr/bin/python3", [Path.Combine(Examples, "python", "test_jacclient.py")]);
        output.WriteLine(result.Stderr);
        Assert.True(result.ExitCode == 0, $"test_jacclient.py failed:\n{result}");
    }

    private string[] Target(string language) =>
        language == "node-rest" ? ["--url", $"http://127.0.0.1:{server.RestPort}"] : ["--target", server.Target];

    private async Task<ExampleProcess.Result> RunExample(string language, params string[] args)
    {
        var result = await ExampleBuilds.Run(language, args, Prepared);
        output.WriteLine($"{language} {string.Join(' ', args)}: exit {result.ExitCode} in {result.Elapsed.TotalSeconds:F2} s");
        output.WriteLine(result.Stdout);
        return result;
    }

    private async Task Prepared(Lazy<Task<ExampleProcess.Result>> step, string what)
    {
        var result = await step.Value;
        output.WriteLine($"{what}: exit {result.ExitCode} in {result.Elapsed.TotalSeconds:F2} s");
        Assert.True(result.ExitCode == 0, $"{what} failed:\n{result}");
    }

    private static string ReferencePath(string model) =>
        Path.Combine(Fixtures.Root, "tests", "fixtures", "reference", model + ".json");
}
