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

        // A Vjp of the first class score: row 0 of the Jacobian, the same as the reference's.
        var classifier = Fixtures.Load("wide_classifier");
        var (x, rows) = classifier.Jacobians.First();
        var (logits, jacobian) = rows.First();
        var vjpRequest = new VjpRequest { Model = "wide_classifier", Wrt = x };
        foreach (var (name, t) in classifier.Inputs) vjpRequest.Inputs[name] = ServingTests.ToProto(t);
        long batch = classifier.Inputs[x].Shape[0], classes = classifier.Outputs[logits].Shape[1];
        var firstClass = new float[batch * classes];
        for (long b = 0; b < batch; b++) firstClass[b * classes] = 1;
        vjpRequest.Cotangents[logits] = new Tensor { Shape = { batch, classes }, Data = { firstClass } };
        var vjp = await server.Client.VjpAsync(vjpRequest);
        long features = jacobian.Shape[2];
        for (int b = 0; b < batch; b++)
            Compare.Close(new RefTensor([features], jacobian.Sample(b).Data[..(int)features]), [features], JacService.Client.Tensors.Row(vjp.Vjp, b),
                Tolerance, $"wide_classifier d{logits}[0]/d{x}, sample {b}");

        var wide = (await server.Client.GetModelAsync(new GetModelRequest { Model = "wide_classifier" })).CompiledDerivatives;
        Assert.True(wide.Enabled);
        Assert.Equal("", wide.Note);
        var compiled = Assert.Single(wide.Graphs, g => g.Kind == "jacobian Reverse");
        Assert.True(compiled.Compiled, compiled.Note);
        var pulled = Assert.Single(wide.Graphs, g => g.Kind == "vjp");
        Assert.True(pulled.Compiled, pulled.Note);

        var cnn = (await server.Client.GetModelAsync(new GetModelRequest { Model = "small_cnn" })).CompiledDerivatives;
        var fallback = Assert.Single(cnn.Graphs, g => g.Kind == "jacobian Reverse");
        Assert.False(fallback.Compiled);
        Assert.Contains("has no compiled derivative rule", fallback.Note);
        await server.WaitForLog("small_cnn version 1: the jacobian Reverse of");

        using var http = new HttpClient();
        var metrics = await http.GetStringAsync($"http://127.0.0.1:{server.MetricsPort}/metrics");
        Assert.Contains(metrics.Split('\n'), line => line.StartsWith("jacservice_derivatives_not_compiled_total{", StringComparison.Ordinal)
            && line.Contains("model=\"small_cnn\"", StringComparison.Ordinal) && double.Parse(line.Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture) >= 1);
    }
}
