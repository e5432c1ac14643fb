using JacService.Core.Tests;
using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>
/// Jacobians from compiled derivative graphs on the real server: GetModel lists each graph asked for, compiled or not
/// and why, and compiled ones answer like functorch's float64 references; a graph that cannot be compiled is logged and
/// counted, and its Jacobians still come from the interpreter.
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
        var convolutional = Assert.Single(cnn.Graphs, g => g.Kind == "jacobian Reverse");
        Assert.True(convolutional.Compiled, convolutional.Note);
    }

    /// <summary>
    /// A PINN's Laplacian with its Jacobian, and its Hessian, over gRPC against functorch's float64 references; GetModel
    /// lists the one second-order graph that serves both (built by the warm-up), compiled.
    /// </summary>
    [Fact]
    public async Task SecondDerivativesComeFromOneCompiledGraphThatGetModelLists()
    {
        var reference = Fixtures.Load("boundary_pinn");
        var laplacian = await server.Client.BatchLaplacianAsync(SecondOrder.LaplacianRequest("boundary_pinn", reference, includeJacobian: true));
        var hessian = await server.Client.BatchHessianAsync(SecondOrder.HessianRequest("boundary_pinn", reference));
        foreach (var (output, expected) in reference.Laplacians!["x"])
            Compare.Close(expected, laplacian.Laplacians[output].Shape.ToArray(), laplacian.Laplacians[output].Data, Tolerance, $"boundary_pinn Laplacian of {output}");
        foreach (var (output, expected) in reference.Jacobians["x"])
            Compare.Close(expected, laplacian.Jacobians[output].Shape.ToArray(), laplacian.Jacobians[output].Data, Tolerance, $"boundary_pinn d{output}/dx");
        foreach (var (output, expected) in reference.Hessians!["x"])
            Compare.Close(expected, hessian.Hessians[output].Shape.ToArray(), hessian.Hessians[output].Data, Tolerance, $"boundary_pinn Hessian of {output}");

        var graphs = (await server.Client.GetModelAsync(new GetModelRequest { Model = "boundary_pinn" })).CompiledDerivatives.Graphs;
        // Other tests on this server may add graphs of Laplacians over some of x's elements ("second order, laplacian over ...").
        var second = Assert.Single(graphs, g => g.Kind == "second order");
        Assert.True(second.Compiled, second.Note);
        Assert.Equal(Protos.V1.DerivativeMode.Forward, second.Mode);
    }

    /// <summary>
    /// Every fixture compiles whole, so the fallback is shown on mlp_tanh reading its input reversed by a Slice of step -1,
    /// which the Slice rule does not compile, on a server of its own: GetModel, the log line and the counter name it, and its Jacobian still comes (from
    /// the interpreter), equal to central differences of the same server's Predict.
    /// </summary>
    [Fact]
    public async Task AGraphThatDoesNotCompileIsShownAndServedByTheInterpreter()
    {
        await using var own = new ServerProcess
        {
            PrepareRepository = root =>
            {
                var folder = Directory.CreateDirectory(Path.Combine(root, UncompiledModel.Name, "1")).FullName;
                File.WriteAllBytes(Path.Combine(folder, "model.onnx"), UncompiledModel.Bytes());
            },
        };
        await own.InitializeAsync();
        var first = Fixtures.Load("mlp_tanh").Inputs["x"].Take(1);
        var x = first.Sample(0);
        var request = new BatchJacobianRequest { Model = UncompiledModel.Name, Mode = Protos.V1.DerivativeMode.Reverse };
        request.Inputs["x"] = ServingTests.ToProto(first);
        var jacobian = (await own.Client.BatchJacobianAsync(request)).Jacobians["y"];

        // Rows x + h·e_j, then x - h·e_j, for every j: one Predict.
        const double h = 1e-3;
        int n = x.Data.Length;
        var shifted = new float[2 * n * n];
        for (int j = 0; j < n; j++)
            for (int side = 0; side < 2; side++)
                for (int i = 0; i < n; i++)
                    shifted[(side * n + j) * n + i] = (float)(x.Data[i] + (i == j ? (side == 0 ? h : -h) : 0));
        var predicted = (await own.Client.PredictAsync(new PredictRequest
        {
            Model = UncompiledModel.Name,
            Inputs = { ["x"] = new Tensor { Shape = { 2 * n, n }, Data = { shifted } } },
        })).Outputs["y"];
        int m = (int)predicted.Shape[1];
        Assert.Equal([1, m, n], jacobian.Shape.ToArray());
        var differences = new double[m * n];
        for (int o = 0; o < m; o++)
            for (int j = 0; j < n; j++)
                differences[o * n + j] = (predicted.Data[j * m + o] - predicted.Data[(n + j) * m + o]) / (2 * h);
        // Float32 outputs of a few units differenced over 2h: up to ~1e-3 of rounding, plus the O(h²) truncation.
        Compare.Close(new RefTensor([1, m, n], differences), [1, m, n], jacobian.Data, 5e-3, "mlp_reversed dy/dx against central differences");

        var graphs = (await own.Client.GetModelAsync(new GetModelRequest { Model = UncompiledModel.Name })).CompiledDerivatives;
        var fallback = Assert.Single(graphs.Graphs, g => g.Kind == "jacobian Reverse");
        Assert.False(fallback.Compiled);
        Assert.StartsWith("Slice 'x_reversed' steps backwards", fallback.Note);
        await own.WaitForLog($"{UncompiledModel.Name} version 1: the jacobian Reverse of");

        using var http = new HttpClient();
        var metrics = await http.GetStringAsync($"http://127.0.0.1:{own.MetricsPort}/metrics");
        Assert.Contains(metrics.Split('\n'), line => line.StartsWith("jacservice_derivatives_not_compiled_total{", StringComparison.Ordinal)
            && line.Contains($"model=\"{UncompiledModel.Name}\"", StringComparison.Ordinal)
            && double.Parse(line.Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture) >= 1);
    }
}
