using System.Collections.Concurrent;
using JacService.Core.Onnx;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// Einsum: multilinear in its operands, so an operand's tangent goes through the same contraction with a basis label
/// added to its term and the output's, its cotangent through the contraction of the output's cotangent with the other
/// operands (put back on the diagonals an operand's term reads), and the second derivative pairs up operands that both
/// depend on wrt.
/// </summary>
internal static class Contractions
{
    public static string? Validate(GraphNode node, int opset)
    {
        try
        {
            EinsumEquation.Parse(node.Attributes.String("equation", ""), node.Inputs.Length);
            return null;
        }
        catch (ArgumentException e)
        {
            return e.Message;
        }
    }

    // Parsed once per equation (load validated each one): the interpreter reads it on every call.
    private static readonly ConcurrentDictionary<(string Equation, int Operands), EinsumEquation> Parsed = new();

    private static EinsumEquation EquationOf(NodeAttributes attributes, int operands) =>
        Parsed.GetOrAdd((attributes.String("equation", ""), operands), key => EinsumEquation.Parse(key.Equation, key.Operands));

    public static Dual[] Einsum(OpContext c)
    {
        var equation = EquationOf(c.Attr, c.InputCount);
        var operands = Enumerable.Range(0, c.InputCount).Select(c.In).ToArray();
        var values = operands.Select(d => d.Value).ToArray();
        for (int i = 0; i < operands.Length; i++)
            if (equation.DiagonalMismatch(i, operands[i].Shape) is { } mismatch) Shapes.Require(false, () => mismatch);
        var y = einsum(equation.Text, values);
        if (!c.AnyTangent) return [new Dual(y, null)];
        char basis = equation.FreeLabel();
        Tensor? tangent = null;
        for (int i = 0; i < operands.Length; i++)
        {
            if (operands[i].Tangent is not { } t) continue;
            var replaced = (Tensor[])values.Clone();
            replaced[i] = Tangents.Fit(t, operands[i].Shape);
            tangent = Tangents.Sum(tangent, einsum(equation.WithLabel(basis, i).Text, replaced));
        }
        return [new Dual(y, Tangents.Fit(tangent!, y.Dims()))];
    }

    public static Tensor?[] EinsumVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        if (c.Cotangent(0) is not { } ct) return result;
        var equation = EquationOf(c.Attr, c.InputCount);
        var operands = Enumerable.Range(0, c.InputCount).Select(c.In).ToArray();
        char basis = equation.FreeLabel();
        for (int i = 0; i < operands.Length; i++)
        {
            if (!c.Needs(i)) continue;
            var (pullback, own) = equation.Pullback(basis, i);
            var x = operands[i];
            Tensor[] inputs = [Tangents.Fit(ct, c.Out(0).Dims()), .. operands.Where((_, j) => j != i),
                .. own.Select(l => ones(equation.Size(i, l, x.Dims()), ct.dtype, ct.device))];
            var pulled = einsum(pullback.Text, inputs);
            if (equation.Diagonal(basis, i) is { } diagonal)
                pulled = einsum(diagonal.Equation, [pulled, .. diagonal.Identities.Select(l => eye(equation.Size(i, l, x.Dims()), dtype: ct.dtype, device: ct.device))]);
            result[i] = Tangents.Unbroadcast(pulled, x.Dims());
        }
        return result;
    }

    /// <summary>Σ over pairs of operands that both depend on wrt: the contraction with both replaced by directions, symmetrised.</summary>
    public static Tensor?[] EinsumCurvature(CurvatureContext c)
    {
        var equation = EquationOf(c.Attr, c.Primal.InputCount);
        int n = c.Primal.InputCount;
        var values = Enumerable.Range(0, n).Select(c.In).ToArray();
        char pair = equation.FreeLabel();
        Tensor? sum = null;
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++)
            {
                if (c.G(i) is not { } gi || c.G(j) is not { } gj) continue;
                var both = equation.WithLabel(pair, i, j);
                int a = i, b = j;
                Tensor Bilinear(Tensor u, Tensor v)
                {
                    var replaced = (Tensor[])values.Clone();
                    replaced[a] = u;
                    replaced[b] = v;
                    return einsum(both.Text, replaced);
                }
                var term = c.SymmetricPairs(Tangents.Fit(gi, values[i].Dims()), Tangents.Fit(gj, values[j].Dims()), Bilinear);
                sum = Tangents.Sum(sum, term);
            }
        return [sum];
    }

    /// <summary>The output's elements: the product of the sizes of its labels (and of the broadcast ellipsis).</summary>
    public static long Allocates(OpContext c)
    {
        var equation = EquationOf(c.Attr, c.InputCount);
        return Sizes.Elements(equation.OutputShape(Enumerable.Range(0, c.InputCount).Select(i => c.In(i).Shape).ToArray()));
    }
}
