using System.Diagnostics;
using JacService.Integration.Tests;
using JacService.Testing;

namespace JacService.Jac.Tests;

/// <summary>
/// jac check against the real server: every fixture's first and second derivatives pass; a model whose graph goes through
/// an integer Cast (its derivative is zero, its values follow x) is found out; a step too large to say anything fails as
/// unchecked.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class CheckVerbTests(ServerProcess server)
{
    public static TheoryData<string> Models => new(Fixtures.Names);

    [Theory]
    [MemberData(nameof(Models))]
    public async Task EveryFixturePasses(string model)
    {
        var r = await JacRunner.RunAsync("check", "-t", server.Target, "-m", model);
        Assert.True(r.ExitCode == 0, $"exit {r.ExitCode}\n{r.Out}\n{r.Err}");
        // The latest version: the shared server has a second one of some fixtures.
        Assert.Matches($@"PASS: the derivatives of {model} version \d+ agree with central differences of its Predict and with each other", r.Out);
        var reference = Fixtures.Load(model);
        foreach (var wrt in reference.Jacobians.Keys)
            Assert.Matches($@"{model} version \d+, wrt {wrt} \[", r.Out);
        int inputs = reference.Jacobians.Count;
        Assert.Equal(inputs, Count(r.Out, "agree: Vjp against Jvp"));
        int outputs = reference.Outputs.Count;
        Assert.Equal(inputs * outputs, Count(r.Out, "agree: Jvp of"));
        Assert.Equal(inputs * outputs, Count(r.Out, "(forward mode) against Jvp"));
        Assert.Equal(inputs * outputs, Count(r.Out, "(reverse mode) against Jvp"));
        // Second derivatives where wrt is small enough (64 elements): the Hessian against differences of Jvp, the
        // Laplacian against its trace.
        foreach (var (wrt, input) in reference.Inputs.Where(i => reference.Jacobians.ContainsKey(i.Key)))
        {
            long size = input.Shape[1..].Aggregate(1L, (p, d) => p * d);
            if (size > 64) Assert.Contains($"BatchHessian not checked: {wrt} has {size} elements, over 64", r.Out);
        }
        int small = reference.Inputs.Count(i => reference.Jacobians.ContainsKey(i.Key) && i.Value.Shape[1..].Aggregate(1L, (p, d) => p * d) <= 64);
        Assert.Equal(small * outputs, Count(r.Out, "against central differences of Jvp"));
        Assert.Equal(small * outputs, Count(r.Out, "agree: BatchLaplacian of"));
        Assert.DoesNotContain("DISAGREE", r.Out);
    }

    [Fact]
    public async Task SamplesFromAFileAreChecked()
    {
        string file = Path.Combine(Fixtures.Root, "tests", "fixtures", "reference", "two_inputs.json");
        var r = await JacRunner.RunAsync("check", "-t", server.Target, "-m", "two_inputs", "-i", file, "--directions", "3");
        Assert.True(r.ExitCode == 0, $"exit {r.ExitCode}\n{r.Out}\n{r.Err}");
        Assert.Contains("two_inputs version 1, wrt x [8]: 3 samples, 3 directions each, step 0.001", r.Out);
        Assert.Contains("two_inputs version 1, wrt z [4]: 3 samples, 3 directions each, step 0.001", r.Out);
    }

    [Fact]
    public async Task AStepTooLargeToSayAnythingFailsUnchecked()
    {
        // tanh saturates over a step of 10: every direction's one-sided differences disagree.
        var r = await JacRunner.RunAsync("check", "-t", server.Target, "-m", "mlp_tanh", "--step", "10");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("NOT CHECKED: Jvp of y against central differences (32 of 32 directions left out: a kink or a jump within the step)", r.Out);
        // The Hessian's differences of Jvp too.
        Assert.Contains("NOT CHECKED: BatchHessian of y against central differences of Jvp (32 of 32 directions left out", r.Out);
        Assert.Matches(@"FAIL: 2 check\(s\) of mlp_tanh version \d+ disagree or could not be made", r.Out);
    }

    [Theory]
    [InlineData("--samples", "0", "--samples and --directions take a whole number of at least 1")]
    [InlineData("--step", "0", "--step and --tolerance take a number above 0")]
    public async Task BadSettingsAreRefusedBeforeAnyCall(string option, string value, string message)
    {
        var r = await JacRunner.RunAsync("check", "-t", "127.0.0.1:1", "-m", "mlp_tanh", option, value);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(message, r.Err);
    }

    [Fact]
    public async Task AnIntegerCastThatBlocksTheDerivativeIsFound()
    {
        // y = tanh(round(x · 10⁶) / 10⁶) through Cast to int64 and back: its values follow tanh(x) within 10⁻⁶, and its
        // derivative is zero (no derivative passes an integer), as the server rightly computes it.
        await using var quantized = new ServerProcess
        {
            CopyFixtures = false,
            ExtraArgs = ["--Models:Warmup=false"],
            PrepareRepository = root => WriteQuantized(Path.Combine(Directory.CreateDirectory(Path.Combine(root, "quantized", "1")).FullName, "model.onnx")),
        };
        await quantized.InitializeAsync();
        var r = await JacRunner.RunAsync("check", "-t", quantized.Target, "-m", "quantized");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("DISAGREE: Jvp of y against central differences: largest difference 1 of the largest value", r.Out);
        // The other checks compare derivatives with derivatives, which agree: all zero.
        Assert.Contains("agree: Vjp against Jvp", r.Out);
        Assert.Contains("FAIL: 1 check(s) of quantized version 1 disagree", r.Out);
    }

    private static int Count(string text, string what) => text.Split('\n').Count(l => l.Contains(what, StringComparison.Ordinal));

    /// <summary>The model, written with Debian's python3-onnx (a test dependency).</summary>
    private static void WriteQuantized(string path)
    {
        var start = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardError = true };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add("""
            import sys
            import onnx
            from onnx import helper, TensorProto as T
            k = helper.make_tensor("k", T.FLOAT, [], [1e6])
            nodes = [helper.make_node("Mul", ["x", "k"], ["m"]), helper.make_node("Cast", ["m"], ["i"], to=T.INT64),
                     helper.make_node("Cast", ["i"], ["f"], to=T.FLOAT), helper.make_node("Div", ["f", "k"], ["q"]),
                     helper.make_node("Tanh", ["q"], ["y"])]
            graph = helper.make_graph(nodes, "quantized", [helper.make_tensor_value_info("x", T.FLOAT, ["B", 4])],
                                      [helper.make_tensor_value_info("y", T.FLOAT, ["B", 4])], initializer=[k])
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
            model.ir_version = 8
            onnx.checker.check_model(model)
            onnx.save(model, sys.argv[1])
            """);
        start.ArgumentList.Add(path);
        using var python = Process.Start(start)!;
        string error = python.StandardError.ReadToEnd();
        python.WaitForExit();
        Assert.True(python.ExitCode == 0, $"writing the model failed: {error}");
    }
}
