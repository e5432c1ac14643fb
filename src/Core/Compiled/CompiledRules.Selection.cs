using static JacService.Core.Compiled.OnnxEmitter;

namespace JacService.Core.Compiled;

/// <summary>Compiled rules of Where, Max and Min, as their interpreter rules in Ops/Selection.cs.</summary>
internal static partial class CompiledRules
{
    /// <summary>Where(c, X, Y): each direction of X where c holds and of Y where it does not, summed back over broadcasts.</summary>
    public static readonly CompiledRule Where = new(
        c =>
        {
            string? sum = null;
            foreach (int i in new[] { 1, 2 })
            {
                if (c.Tangent(i) is null) continue;
                var term = c.Fit(Chosen(c, c.Aligned(i), i), i);
                sum = sum is null ? term : c.Emit.Add(sum, term);
            }
            return [sum];
        },
        c => c.Cotangent(0) is not { } ct ? [null, null, null]
            : [null, c.Needs(1) ? c.Unbroadcast(Chosen(c, ct, 1), 1) : null, c.Needs(2) ? c.Unbroadcast(Chosen(c, ct, 2), 2) : null]);

    /// <summary>A direction where input <paramref name="i"/> (1 or 2) of a Where is chosen, zero elsewhere.</summary>
    private static string Chosen(OnnxRuleContext c, string direction, int i) =>
        i == 1 ? c.Emit.Op("Where", c.In(0), direction, c.Emit.Scalar(0)) : c.Emit.Op("Where", c.In(0), c.Emit.Scalar(0), direction);

    /// <summary>Max or Min of any number of inputs: each direction times its input's share of the extremum.</summary>
    public static readonly CompiledRule Extremum = new(
        c =>
        {
            var shares = Shares(c);
            string? sum = null;
            for (int i = 0; i < c.InputCount; i++)
            {
                if (c.Tangent(i) is null) continue;
                var term = c.Fit(c.Emit.Mul(c.Aligned(i), shares[i]), i);
                sum = sum is null ? term : c.Emit.Add(sum, term);
            }
            return [sum];
        },
        c =>
        {
            var result = new string?[c.InputCount];
            if (c.Cotangent(0) is not { } ct) return result;
            var shares = Shares(c);
            for (int i = 0; i < c.InputCount; i++)
                if (c.Needs(i)) result[i] = c.Unbroadcast(c.Emit.Mul(ct, shares[i]), i);
            return result;
        });

    /// <summary>
    /// TopK along a per-sample axis: the directions gathered at the indices it chose; going back, scattered and added where
    /// they came from, which ScatterElements does from opset 16.
    /// </summary>
    public static readonly CompiledRule TopK = new(
        c =>
        {
            if (c.Tangent(0) is not { } t) return [null, null];
            return [c.Emit.Op("GatherElements", [c.Emit.Full(t, c.Basis, c.In(0)), ForEveryDirection(c, c.Out(1))], Int("axis", c.DirectionAxis(-1))), null];
        },
        c =>
        {
            var result = new string?[c.InputCount];
            if (c.Cotangent(0) is not { } ct || !c.Needs(0)) return result;
            if (c.Emit.Opset < 16)
                throw new NotCompilableException($"TopK '{c.Out(0)}' is compiled in reverse from opset 16 (the model's is {c.Emit.Opset})");
            result[0] = c.Emit.Op("ScatterElements", [c.Emit.Full(c.Emit.Scalar(0), c.Basis, c.In(0)), ForEveryDirection(c, c.Out(1)), c.Emit.Full(ct, c.Basis, c.Out(0))],
                Int("axis", c.DirectionAxis(-1)), String("reduction", "add"));
            return result;
        });


    /// <summary>Each input's share of the extremum's derivative: 1 where it alone attains it, 1/n where n inputs tie.</summary>
    private static string[] Shares(OnnxRuleContext c)
    {
        var attains = Enumerable.Range(0, c.InputCount).Select(j => c.Emit.Op("Cast", [c.Emit.Op("Equal", c.In(j), c.Out(0))], Int("to", 1))).ToArray();
        if (attains.Length == 1) return attains;
        var count = attains.Skip(1).Aggregate(attains[0], c.Emit.Add);
        return attains.Select(a => c.Emit.Op("Div", a, count)).ToArray();
    }
}
