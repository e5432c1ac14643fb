using JacService.Core.Models;
using JacService.Core.Onnx;
using JacService.Core.Ops;
using TorchSharp;
using static JacService.Core.Tests.OpRows;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>
/// Every op's JVP rule, one small model per row, in float64: the Jacobian pushed forward through the identity
/// basis must match central finite differences of the forward pass and TorchSharp's reverse-mode autograd.
/// </summary>
public class OpRuleTests
{
    public static TheoryData<string> RowsWithValues => new(Rows.Where(r => r.Expected is not null).Select(r => r.Name));

    // ---- Tests ----------------------------------------------------------------------------------------------

    [Fact]
    public void EveryOpHasARow()
    {
        var ops = OpTable.Rules.Keys.Concat(OnnxModelReader.ExpandedOps).ToList();
        var missing = ops.Except(Rows.Select(r => r.OpType)).Order().ToList();
        Assert.True(missing.Count == 0, $"ops in OpTable or expanded at parse without a row in OpRows: {string.Join(", ", missing)}");
        var unknown = Rows.Select(r => r.OpType).Except(ops).ToList();
        Assert.True(unknown.Count == 0, $"rows for ops OpTable does not have: {string.Join(", ", unknown)}");
    }

    [Theory]
    [MemberData(nameof(RowNames), MemberType = typeof(OpRows))]
    public void JvpMatchesFiniteDifferences(string row) => CompareJacobians(row, FiniteDifferences, 1e-6, "finite differences");

    [Theory]
    [MemberData(nameof(RowNames), MemberType = typeof(OpRows))]
    public void JvpMatchesAutograd(string row) => CompareJacobians(row, Autograd, 1e-9, "autograd");

    [Fact]
    public void EveryOpHasAReverseRule()
    {
        var missing = OpTable.Rules.Values.Where(r => r.Kind != OpKind.Constant && ReferenceEquals(r.Vjp, OpRule.NoVjp)).Select(r => r.OpType).ToList();
        Assert.True(missing.Count == 0, $"ops that carry derivatives but have no reverse rule: {string.Join(", ", missing)}");
    }

    [Theory]
    [MemberData(nameof(OpRows.RowNames), MemberType = typeof(OpRows))]
    public void VjpMatchesFiniteDifferences(string row) => CompareReverse(row, FiniteDifferences, 1e-6, "finite differences");

    [Theory]
    [MemberData(nameof(OpRows.RowNames), MemberType = typeof(OpRows))]
    public void VjpMatchesTheForwardRule(string row) =>
        CompareReverse(row, JvpJacobians, 1e-12, "the forward (JVP) rule");

    /// <summary>
    /// On a GPU a rule that reads a number off the device stalls the stream, and a pass that does cannot be recorded
    /// as a CUDA graph: every row's forward, JVP and VJP passes read their pads, starts, axes, shapes and bounds from
    /// the plan's host copies (<see cref="HostValues"/>).
    /// </summary>
    [Theory]
    [MemberData(nameof(OpRows.RowNames), MemberType = typeof(OpRows))]
    public void PassesReadNothingOffTheDevice(string row)
    {
        var (model, g) = Load(ByName[row]);
        using var _ = model;
        using var scope = NewDisposeScope();
        var inputs = Inputs(g);
        var types = g.OutputTypes;
        void Passes()
        {
            foreach (var wrt in Enumerable.Range(0, g.Inputs.Count).Where(i => g.Inputs[i].Differentiated))
            {
                JvpJacobians(model, inputs, wrt, types);
                for (int o = 0; o < types.Count; o++)
                    if (types[o] == OnnxType.Float) VjpJacobian(model, inputs, wrt, o);
            }
        }
        // The first passes build the plans: planning runs the graph on zeros and reads what it needs.
        Passes();
        long before = HostValues.DeviceReads;
        Passes();
        Assert.True(HostValues.DeviceReads == before, $"{row}: {HostValues.DeviceReads - before} values read off the device");
    }

    [Theory]
    [MemberData(nameof(RowsWithValues))]
    public void ForwardMatchesExpectedValues(string row)
    {
        var (model, g) = Load(ByName[row]);
        using var _ = model;
        using var scope = NewDisposeScope();
        var inputs = Inputs(g);
        var actual = model.Forward(inputs);
        var expected = ByName[row].Expected!(inputs);
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < actual.Length; i++)
        {
            Assert.Equal(expected[i].shape, actual[i].shape);
            Assert.Equal(expected[i].dtype, actual[i].dtype);
            Assert.True(expected[i].to_type(ScalarType.Float64).allclose(actual[i].to_type(ScalarType.Float64), rtol: 1e-12, atol: 1e-12),
                $"output {i}: [{string.Join(", ", actual[i].to_type(ScalarType.Float64).data<double>().ToArray())}]");
        }
    }

    // ---- Machinery ------------------------------------------------------------------------------------------

    private delegate Tensor?[] Reference(ModelVersion model, Tensor[] inputs, int wrt, IReadOnlyList<int> outputTypes);

    private static (ModelVersion, OnnxBuilder) Load(Row row)
    {
        var g = new OnnxBuilder();
        row.Build(g);
        return (ModelVersion.Load(row.Name, 1, g.ToBytes(), new EngineLimits(), computeType: ScalarType.Float64), g);
    }

    private static Tensor[] Inputs(OnnxBuilder g) => g.Inputs.Select(i => tensor(i.Data, i.Shape, ScalarType.Float64)).ToArray();

    private static Tensor[] With(Tensor[] inputs, int wrt, Tensor x) => inputs.Select((t, i) => i == wrt ? x : t).ToArray();

    private static void CompareJacobians(string row, Reference reference, double tolerance, string method) =>
        Compare(row, JvpJacobians, "JVP", reference, tolerance, method);

    private static void CompareReverse(string row, Reference reference, double tolerance, string method) =>
        Compare(row, (model, inputs, wrt, types) => types.Select((t, o) => t == OnnxType.Float ? VjpJacobian(model, inputs, wrt, o) : null).ToArray(),
            "reverse mode", reference, tolerance, method);

    /// <summary>For every differentiated input and float output: the Jacobian [out, in] <paramref name="actual"/> computes against the reference's.</summary>
    private static void Compare(string row, Reference actual, string actualName, Reference reference, double tolerance, string method)
    {
        var (model, g) = Load(ByName[row]);
        using var _ = model;
        using var scope = NewDisposeScope();
        var inputs = Inputs(g);
        var types = g.OutputTypes;
        int checkedPairs = 0;
        foreach (var wrt in Enumerable.Range(0, g.Inputs.Count).Where(i => g.Inputs[i].Differentiated))
        {
            var computed = actual(model, inputs, wrt, types);
            var expected = reference(model, inputs, wrt, types);
            for (int o = 0; o < types.Count; o++)
            {
                if (types[o] != OnnxType.Float) continue;
                var what = $"{row}: d output {o} / d {g.Inputs[wrt].Name}, {actualName} against {method}";
                Assert.Equal(expected[o]!.shape, computed[o]!.shape);
                double scale = Math.Max(1, expected[o]!.abs().max().item<double>());
                double error = (computed[o]! - expected[o]!).abs().max().item<double>();
                Assert.True(error <= tolerance * scale, $"{what}: max abs error {error:E2} > {tolerance:E0} x {scale:G4}");
                checkedPairs++;
            }
        }
        // Rows whose only outputs are integers (Shape, Cast to int64) check the null tangent inside JvpJacobians.
        Assert.True(checkedPairs > 0 || types.All(t => t != OnnxType.Float), $"{row}: nothing was compared");
    }

    /// <summary>Pulls the identity basis of output <paramref name="output"/> [m, ..output] back: the rows of its Jacobian [m, n].</summary>
    private static Tensor VjpJacobian(ModelVersion model, Tensor[] inputs, int wrt, int output)
    {
        var y = model.Forward(inputs)[output];
        long m = y.numel();
        var pulled = model.Vjp(inputs, wrt, [output], [eye(m, dtype: ScalarType.Float64).reshape([m, .. y.shape])]);
        Assert.Equal([m, .. inputs[wrt].shape], pulled.shape);
        return pulled.reshape(m, -1);
    }

    /// <summary>
    /// Pushes the full identity basis [n, ..input] through the graph: the tangent of each float output, reshaped to
    /// [n, m], is the transposed Jacobian. Non-float outputs must have no (or a zero) tangent.
    /// </summary>
    private static Tensor?[] JvpJacobians(ModelVersion model, Tensor[] inputs, int wrt, IReadOnlyList<int> types)
    {
        var x = inputs[wrt];
        long n = x.numel();
        var result = model.Jvp(inputs, wrt, eye(n, dtype: ScalarType.Float64).reshape([n, .. x.shape]));
        var forward = model.Forward(inputs);
        return result.Values.Select((value, o) =>
        {
            Assert.True(value.to_type(ScalarType.Float64).allclose(forward[o].to_type(ScalarType.Float64), rtol: 0, atol: 0), $"output {o}: JVP primal differs from Forward");
            var tangent = result.Tangents[o];
            if (types[o] != OnnxType.Float)
            {
                Assert.True(tangent is null || tangent.count_nonzero().item<long>() == 0, $"output {o} of type {types[o]} has a tangent");
                return null;
            }
            if (tangent is null) return zeros(value.numel(), n, ScalarType.Float64);
            Assert.Equal([n, .. value.shape], tangent.shape);
            return tangent.reshape(n, -1).t();
        }).ToArray();
    }

    /// <summary>Central differences of Forward, step 1e-6, one input element at a time.</summary>
    private static Tensor?[] FiniteDifferences(ModelVersion model, Tensor[] inputs, int wrt, IReadOnlyList<int> types)
    {
        const double h = 1e-6;
        var x = inputs[wrt];
        long n = x.numel();
        var basis = eye(n, dtype: ScalarType.Float64).reshape([n, .. x.shape]);
        var columns = types.Select(_ => new List<Tensor>()).ToArray();
        for (long j = 0; j < n; j++)
        {
            // Cached Scalars, not implicit ones: ScalarLifetimeTests collects garbage in parallel, and TorchSharp does not
            // keep a temporary Scalar alive while libtorch reads it.
            var plus = model.Forward(With(inputs, wrt, x.Plus(basis[j] * Scalars.S(h))));
            var minus = model.Forward(With(inputs, wrt, x - basis[j] * Scalars.S(h)));
            for (int o = 0; o < types.Count; o++)
                if (types[o] == OnnxType.Float) columns[o].Add((plus[o] - minus[o]).flatten() / Scalars.S(2 * h));
        }
        return columns.Select((c, o) => types[o] == OnnxType.Float ? stack(c, 1) : null).ToArray();
    }

    /// <summary>Rows of the Jacobian from reverse-mode autograd through Forward, one output element at a time.</summary>
    private static Tensor?[] Autograd(ModelVersion model, Tensor[] inputs, int wrt, IReadOnlyList<int> types)
    {
        var x = inputs[wrt].detach().clone().requires_grad_(true);
        var outputs = model.Forward(With(inputs, wrt, x));
        return outputs.Select((y, o) =>
        {
            if (types[o] != OnnxType.Float) return null;
            var flat = y.flatten();
            if (!flat.requires_grad) return zeros(y.numel(), x.numel(), ScalarType.Float64);
            var rows = Enumerable.Range(0, (int)flat.numel()).Select(i =>
            {
                var grad = torch.autograd.grad([flat[i]], [x], retain_graph: true, allow_unused: true)[0];
                return grad is null || grad.IsInvalid ? zeros(x.numel(), ScalarType.Float64) : grad.flatten();
            });
            return stack(rows.ToArray());
        }).ToArray();
    }
}
