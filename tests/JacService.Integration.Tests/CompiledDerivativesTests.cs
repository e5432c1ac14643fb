using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>
/// Jacobians from compiled derivative graphs on the real server: GetModel lists each graph asked for, compiled or not
/// and why; a graph that cannot be compiled is logged and counted, and its Jacobians still come from the interpreter.
/// Both answer like functorch's float64 references.
/// </summary>
[Collection(ServerCollection.Name)]
public class CompiledDerivativesTests(ServerProcess server)
{
    private const double Tolerance = 1e-4;

    [Fact]
    public async Task GetModelTheLogAndAMetricShowWhatIsCompiled()
    {
        foreach (var model in new[] { "wide_classifier", "small_cnn" })
        {
            var reference = Fixtures.Load(model);
            var (wrt, perOutput) = reference.Jacobians.First();
            var request = new BatchJacobianRequest { Model = model, Wrt = wrt, Mode = Protos.V1.DerivativeMode.Reverse };
            foreach (var (name, t) in reference.Inputs) request.Inputs[name] = ServingTests.ToProto(t);
            var response = await server.Client.BatchJacobianAsync(request);
            foreach (var (output, expected) in perOutput)
                Compare.Close(expected, response.Jacobians[output].Shape.ToArray(), response.Jacobians[output].Data, Tolerance, $"{model} d{output}/d{wrt}");
        }

        var wide = (await server.Client.GetModelAsync(new GetModelRequest { Model = "wide_classifier" })).CompiledDerivatives;
        Assert.True(wide.Enabled);
        Assert.Equal("", wide.Note);
        var compiled = Assert.Single(wide.Graphs, g => g.Mode == Protos.V1.DerivativeMode.Reverse);
        Assert.True(compiled.Compiled, compiled.Note);

        var cnn = (await server.Client.GetModelAsync(new GetModelRequest { Model = "small_cnn" })).CompiledDerivatives;
        var fallback = Assert.Single(cnn.Graphs, g => g.Mode == Protos.V1.DerivativeMode.Reverse);
        Assert.False(fallback.Compiled);
        Assert.Contains("has no compiled derivative rule", fallback.Note);
        await server.WaitForLog("small_cnn version 1: the jacobian Reverse of");

        using var http = new HttpClient();
        var metrics = await http.GetStringAsync($"http://127.0.0.1:{server.MetricsPort}/metrics");
        Assert.Contains(metrics.Split('\n'), line => line.StartsWith("jacservice_derivatives_not_compiled_total{", StringComparison.Ordinal)
            && line.Contains("model=\"small_cnn\"", StringComparison.Ordinal) && double.Parse(line.Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture) >= 1);
    }
}
