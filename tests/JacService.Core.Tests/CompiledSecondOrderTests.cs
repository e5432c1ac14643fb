using JacService.Core.Compiled;
using JacService.Core.Models;
using JacService.Core.Ops;
using JacService.Testing;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>
/// Hessians and Laplacians from compiled second-order graphs (a derivative graph differentiated again,
/// <see cref="SecondOrderGraph"/>) against the interpreter's second-order rules, per op row; where a graph cannot be
/// written, the interpreter serves with the reason on record. SecondOrderFixtureTests compare both with functorch.
/// </summary>
public class CompiledSecondOrderTests(ITestOutputHelper output)
{
    private static readonly EngineLimits AlwaysCompiled = new() { CalibrateAuto = false };

    public static TheoryData<string> Rows
    {
        get
        {
            var data = new TheoryData<string>();
            foreach (var row in RowBothWays.Compilable) data.Add(row.Name);
            return data;
        }
    }

    /// <summary>
    /// Rows whose second derivatives the interpreter serves, each with the reason the graph gives. Most are rows whose
    /// first derivatives do not compile either (CompiledDerivativesTests.RowFallbacks); the others are ops whose compiled
    /// rules write what cannot be read back and differentiated again: MaxPool (its indices output, which the engine does not compute), Einsum over "..." (a basis label
    /// ahead of the ellipsis), TopK (indices from the data, which the writer takes for a dependent value).
    /// </summary>
    private static readonly Dictionary<string, string> RowFallbacks = new()
    {
        ["AveragePool 1-D count_include_pad 0, asymmetric pads"] = "pads without count_include_pad",
        ["AveragePool 2-D auto_pad SAME_UPPER stride 2"] = "pads without count_include_pad",
        ["AveragePool 2-D ceil_mode, count_include_pad 0, asymmetric pads"] = "pads without count_include_pad",
        ["AveragePool 2-D count_include_pad 0, asymmetric pads"] = "pads without count_include_pad",
        ["Einsum ...ij,...jk->...ik, the weight broadcast"] = "holds a character other than a letter",
        // Its sequence is a constant of batch 2: no plan for a batch of three tells the read-back graph's batch axes apart.
        ["GRU bidirectional, only the initial state differentiated (layout 0 between transposes)"] = "works along axis 0, which is not a per-sample axis",
        ["GRU bidirectional, reset before the product, batch first, initial state differentiated (opset 14)"] = "batch first (layout 1)",
        ["Gemm x times x transposed, alpha"] = "only its data input is compiled",
        ["GatherElements axis -1, fewer rows than the data"] = "compiled in reverse from opset 16",
        ["GatherND one element per row with batch_dims 1 (a repeated tuple, a negative index)"] = "compiled in reverse from opset 16",
        ["GatherND rows by one-axis tuples with batch_dims 1"] = "compiled in reverse from opset 16",
        ["MatMul 1-D x times 2-D x"] = "multiplies ranks",
        ["MatMul 2-D x 1-D, both differentiated"] = "multiplies ranks",
        ["MatMul 3-D x 1-D, both differentiated"] = "multiplies ranks",
        ["LSTM bidirectional, batch first, every output, initial states differentiated (opset 14)"] = "batch first (layout 1)",
        ["LogSoftmax axis 0 of 3"] = "works along axis 0, which is not a per-sample axis",
        ["MatMul x times x"] = "takes its input 1 from wrt, whose first axis is not the product's batch axis",
        ["MaxPool 1-D dilation 2 asymmetric pads"] = PoolIndices,
        ["MaxPool 1-D dilation 2, end pad 1"] = "has overlapping windows",
        ["MaxPool 1-D kernel 3 stride 3, tiles with a remainder"] = PoolIndices,
        ["MaxPool 1-D stride 2 pads 1"] = "has overlapping windows",
        ["MaxPool 2-D asymmetric pads"] = "has overlapping windows",
        ["MaxPool 2-D ceil_mode, asymmetric pads"] = "has overlapping windows",
        ["MaxPool 2-D dilations, ceil_mode"] = "has overlapping windows",
        ["MaxPool 2-D kernel 2 stride 2"] = PoolIndices,
        ["MaxPool 2-D kernel 2 stride 2, tiles exactly"] = PoolIndices,
        ["MaxPool 2-D kernel 3 stride 2 symmetric pads"] = "has overlapping windows",
        ["MaxPool 2-D kernel [3, 2] stride [3, 2], tiles with remainders"] = PoolIndices,
        ["Pad edge on the last axis"] = "compiled for constant padding",
        ["Pad reflect on axis 1 of 3 named by axes (opset 18)"] = "compiled for constant padding",
        ["Pad reflect on the last two axes"] = "compiled for constant padding",
        ["Pad wrap on the last axis of a 2-D input (opset 19)"] = "compiled for constant padding",
        ["Pad wrap on the last two axes (opset 19)"] = "compiled for constant padding",
        ["Slice ends computed from the batch size (opset 15)"] = "from a computed value",
        ["Slice step -1 reverses axis 1"] = "steps backwards",
        ["TopK 3 smallest along axis 1, values only (opset 16)"] = "which it does not differentiate",
    };

    private const string PoolIndices = "only the first output is supported";

    [Fact]
    public void OneGraphServesHessiansAndLaplaciansWithAndWithoutJacobians()
    {
        var reference = Fixtures.Load("boundary_pinn");
        var bytes = File.ReadAllBytes(Fixtures.ModelPath("boundary_pinn"));
        using var compiled = ModelVersion.Load("boundary_pinn", 1, bytes, AlwaysCompiled);
        using var interpreted = ModelVersion.Load("boundary_pinn", 1, bytes, new EngineLimits { CompileDerivatives = false });
        var inputs = compiled.ValidateInputs(reference.Inputs.ToDictionary(p => p.Key, p => new HostTensor(p.Value.Shape, p.Value.Floats)), batched: true);
        int[] of = [0], all = [0, 1, 2], some = [0, 2];
        using var scope = NewDisposeScope();
        // Each call in turn, in an order that would hand one the other's results if they shared more than the graph.
        foreach (bool includeJacobian in new[] { false, true, false })
        {
            foreach (var axes in new int[]?[] { all, null, some })
            {
                var served = axes is null ? compiled.Hessian(inputs, 0, of, includeJacobian) : compiled.Laplacian(inputs, 0, of, axes, includeJacobian);
                var expected = axes is null ? interpreted.Hessian(inputs, 0, of, includeJacobian) : interpreted.Laplacian(inputs, 0, of, axes, includeJacobian);
                Assert.True(served.Compiled);
                string what = $"{(axes is null ? "Hessian" : $"Laplacian over {axes.Length}")}{(includeJacobian ? " with the Jacobian" : "")}";
                CompiledDerivativesTests.AssertClose(what, expected.SecondOrder, served.SecondOrder, 1e-4f);
                CompiledDerivativesTests.AssertClose(what + ": Jacobians", expected.Jacobians, served.Jacobians, 1e-4f);
                Assert.Equal(includeJacobian, served.Jacobians.Count == 1);
            }
        }
        Assert.Equal(["second order", "second order, laplacian over 0,2"], compiled.CompiledDerivatives.Select(e => e.Kind).Where(k => k.StartsWith("second")).Order());
    }

    [Fact]
    public void ListedRowsExist() => Assert.All(RowFallbacks.Keys, r => Assert.Contains(r, OpRows.ByName.Keys));

    [Theory]
    [MemberData(nameof(Rows))]
    public void OpRowHessiansAndLaplaciansEqualTheInterpreters(string row)
    {
        using var models = new RowBothWays(row);
        var (compiled, interpreted, inputs, wrt, of) = (models.Compiled, models.Interpreted, models.Inputs, models.Wrt, models.Of);
        var axes = Enumerable.Range(0, (int)Shapes.Product(inputs[wrt].Shape[1..])).ToArray();

        using var scope = NewDisposeScope();
        EngineResult hessian, laplacian;
        try
        {
            hessian = interpreted.Hessian(inputs, wrt, of, includeJacobian: true);
            laplacian = interpreted.Laplacian(inputs, wrt, of, axes, includeJacobian: false);
        }
        catch (Exception e) when (e is NodeEvaluationException or System.Runtime.InteropServices.ExternalException)
        {
            // A row whose first axis is not a batch axis: per-sample derivatives do not apply (CompiledDerivativesTests.NotPerSample).
            output.WriteLine($"{row}: no per-sample second derivative ({e.Message.Split('\n')[0]})");
            Assert.Contains(row, CompiledDerivativesTests.NotPerSample);
            return;
        }
        if (CompiledDerivativesTests.NotFloat32.TryGetValue(row, out var type))
        {
            Assert.Contains(type, compiled.CompiledDerivativesNote);
            Assert.False(compiled.Hessian(inputs, wrt, of, includeJacobian: true).Compiled);
            return;
        }
        var served = (Hessian: compiled.Hessian(inputs, wrt, of, includeJacobian: true), Laplacian: compiled.Laplacian(inputs, wrt, of, axes, includeJacobian: false));
        // One graph serves both: a Laplacian over every element of wrt is the Hessian graph's trace.
        var entry = Assert.Single(compiled.CompiledDerivatives, e => e.Kind.StartsWith("second order"));
        Assert.Equal("second order", entry.Kind);
        output.WriteLine($"{row}: {(entry.Compiled ? "compiled" : "interpreter: " + entry.Note)}");
        if (RowFallbacks.TryGetValue(row, out var reason))
        {
            Assert.Contains(reason, entry.Note);
            Assert.False(served.Hessian.Compiled || served.Laplacian.Compiled);
        }
        else
        {
            Assert.True(entry.Compiled, entry.Note);
            Assert.True(served.Hessian.Compiled && served.Laplacian.Compiled);
        }
        // Second derivatives in float32 sum more terms, each a product of two slopes, than the Jacobians' 1e-5 covers.
        CompiledDerivativesTests.AssertClose($"{row} Hessian", hessian.SecondOrder, served.Hessian.SecondOrder, 1e-4f);
        CompiledDerivativesTests.AssertClose($"{row} Jacobian beside the Hessian", hessian.Jacobians, served.Hessian.Jacobians, 1e-4f);
        CompiledDerivativesTests.AssertClose($"{row} Laplacian", laplacian.SecondOrder, served.Laplacian.SecondOrder, 1e-4f);
    }
}
