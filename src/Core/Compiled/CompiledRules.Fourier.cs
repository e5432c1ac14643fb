using JacService.Core.Onnx.Proto;
using JacService.Core.Ops;
using static JacService.Core.Compiled.OnnxEmitter;

namespace JacService.Core.Compiled;

/// <summary>DFT's compiled rule, as its interpreter rule in Ops/Fourier.cs: the same transform, and its transpose, as ONNX nodes.</summary>
internal static partial class CompiledRules
{
    /// <summary>
    /// DFT along a per-sample axis: the directions transformed alike (the axis one further for the basis); the cotangent
    /// by the conjugate transform (a DFT the other way, scaled by L or 1/L) of its bins padded back to L, cut or padded
    /// back to the signal's n, and its real part for a real signal. The length and axis must be fixed by the file.
    /// </summary>
    public static readonly CompiledRule Dft = new(
        c =>
        {
            if (c.Tangent(0) is not { } t) return [null];
            var transform = TransformOf(c);
            string length = c.InputCount > 1 ? c.In(1) : "";
            return [Transformed(c, t, length, transform.Axis + 1, transform.Inverse, transform.OneSided)];
        },
        c =>
        {
            var result = new string?[c.InputCount];
            if (c.Cotangent(0) is not { } ct || !c.Needs(0)) return result;
            var transform = TransformOf(c);
            var x = c.Emit.Shape(c.In(0));
            long axis = transform.Axis + 1, n = x[transform.Axis], length = transform.Length;
            if (transform.OneSided) ct = PaddedAlong(c, ct, axis, x.Length + 1, length - transform.Bins);
            var signal = Transformed(c, ct, "", axis, !transform.Inverse, oneSided: false);
            signal = c.Emit.Mul(signal, c.Emit.Scalar(transform.Inverse ? 1f / length : length));
            signal = length >= n
                ? c.Emit.Op("Slice", signal, c.Emit.Ints(0), c.Emit.Ints(n), c.Emit.Ints(axis))
                : PaddedAlong(c, signal, axis, x.Length + 1, n - length);
            result[0] = x[^1] == 1 ? c.Emit.Op("Slice", signal, c.Emit.Ints(0), c.Emit.Ints(1), c.Emit.Ints(-1)) : signal;
            return result;
        });

    private static Fourier.Transform TransformOf(OnnxRuleContext c)
    {
        long? length = c.InputCount > 1 && c.In(1).Length > 0
            ? (c.ConstantInput(1) ?? throw new NotCompilableException($"DFT '{c.Out(0)}' takes a dft_length the file does not fix"))[0]
            : null;
        long axis = c.Emit.Opset >= 20
            ? c.InputCount > 2 && c.In(2).Length > 0
                ? (c.ConstantInput(2) ?? throw new NotCompilableException($"DFT '{c.Out(0)}' takes an axis the file does not fix"))[0]
                : -2
            : c.Int("axis", 1);
        return Fourier.For(c.Emit.Shape(c.In(0)), axis, length, c.Int("inverse", 0) != 0, c.Int("onesided", 0) != 0);
    }

    /// <summary>A DFT node on directions, along <paramref name="axis"/> of theirs.</summary>
    private static string Transformed(OnnxRuleContext c, string direction, string length, long axis, bool inverse, bool oneSided)
    {
        AttributeProto[] attributes = [Int("inverse", inverse ? 1 : 0), Int("onesided", oneSided ? 1 : 0)];
        return c.Emit.Opset >= 20
            ? c.Emit.Op("DFT", [direction, length, c.Emit.Op("Squeeze", c.Emit.Ints(axis), c.Emit.Ints(0))], attributes)
            : c.Emit.Op("DFT", [direction, length], [.. attributes, Int("axis", axis)]);
    }

    /// <summary><paramref name="direction"/> (of rank <paramref name="rank"/>) with <paramref name="count"/> zeros after its end along <paramref name="axis"/>.</summary>
    private static string PaddedAlong(OnnxRuleContext c, string direction, long axis, int rank, long count) =>
        c.Emit.Op("Pad", direction, c.Emit.Ints(PadOne(rank, axis, count)));
}
