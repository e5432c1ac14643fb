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
    /// back to the signal's n, and its real part for a real signal. A short transform (<see cref="Fourier.IsDense"/>) is
    /// one MatMul by its real matrix either way, as in the interpreter; a long inverse of a half spectrum (irfft) goes back
    /// as the weighted rfft of its cotangent. The length and axis must be fixed by the file.
    /// </summary>
    public static readonly CompiledRule Dft = new(
        c =>
        {
            if (c.Tangent(0) is not { } t) return [null];
            var transform = TransformOf(c);
            var x = c.Emit.Shape(c.In(0));
            if (Fourier.IsDense(transform, x[transform.Axis], x[^1]))
                return [ThroughMatrix(c, t, x, transform, transposed: false)];
            string length = c.InputCount > 1 ? c.In(1) : "";
            return [Transformed(c, t, length, transform.Axis + 1, transform.Inverse, transform.OneSided)];
        },
        c =>
        {
            var result = new string?[c.InputCount];
            if (c.Cotangent(0) is not { } ct || !c.Needs(0)) return result;
            var transform = TransformOf(c);
            var x = c.Emit.Shape(c.In(0));
            if (Fourier.IsDense(transform, x[transform.Axis], x[^1]))
            {
                result[0] = ThroughMatrix(c, ct, x, transform, transposed: true);
                return result;
            }
            long axis = transform.Axis + 1, n = x[transform.Axis], length = transform.Length;
            if (transform.RealInverse)
            {
                // The bins' cotangent is the rfft of the signal's, weighted; bins past L/2 get none.
                long used = Math.Min(n, length / 2 + 1);
                var spectrum = c.Emit.Op("Slice", Transformed(c, ct, "", axis, inverse: false, oneSided: true), c.Emit.Ints(0), c.Emit.Ints(used), c.Emit.Ints(axis));
                var weights = transform.HalfSpectrumWeights(used).Select(w => (float)w).ToArray();
                var weighted = c.Emit.Mul(spectrum, c.Emit.Floats(weights, [used, .. Enumerable.Repeat(1L, x.Length - (int)axis)]));
                result[0] = used < n ? PaddedAlong(c, weighted, axis, x.Length + 1, n - used) : weighted;
                return result;
            }
            if (transform.OneSided) ct = PaddedAlong(c, ct, axis, x.Length + 1, length - transform.Bins);
            var signal = Transformed(c, ct, "", axis, !transform.Inverse, oneSided: false);
            signal = c.Emit.Mul(signal, c.Emit.Scalar(transform.Inverse ? 1f / length : length));
            signal = length >= n
                ? c.Emit.Op("Slice", signal, c.Emit.Ints(0), c.Emit.Ints(n), c.Emit.Ints(axis))
                : PaddedAlong(c, signal, axis, x.Length + 1, n - length);
            result[0] = x[^1] == 1 ? c.Emit.Op("Slice", signal, c.Emit.Ints(0), c.Emit.Ints(1), c.Emit.Ints(-1)) : signal;
            return result;
        });

    /// <summary>
    /// Directions of the signal <paramref name="x"/> (or, <paramref name="transposed"/>, of its transform) through the
    /// transform's real matrix, as the interpreter runs short transforms: the transformed axis moved beside the last,
    /// both flattened, one MatMul by a constant, and back.
    /// </summary>
    private static string ThroughMatrix(OnnxRuleContext c, string direction, long[] x, Fourier.Transform transform, bool transposed)
    {
        long n = x[transform.Axis], channels = x[^1], axis = transform.Axis + 1;
        int rank = x.Length + 1;
        var values = transform.DenseValues(n, channels);
        long rows = n * channels, columns = transform.Bins * transform.Channels;
        var matrix = new float[values.Length];
        for (long r = 0; r < rows; r++)
            for (long q = 0; q < columns; q++)
                matrix[transposed ? q * rows + r : r * columns + q] = (float)values[r * columns + q];
        long[] perm = [.. Enumerable.Range(0, rank).Select(a => (long)a).Where(a => a != axis && a != rank - 1), axis, rank - 1];
        long[] inverse = new long[rank];
        for (int i = 0; i < rank; i++) inverse[perm[i]] = i;
        // After the move: [K, batch, ..the other signal axes, axis, pairs]; K and the batch stay where they are.
        long[] others = [.. Enumerable.Range(1, x.Length - 2).Where(a => a != transform.Axis).Select(a => x[a])];
        var moved = c.Emit.Op("Transpose", [direction], IntList("perm", perm));
        var flat = c.Emit.Op("Reshape", moved, c.Emit.Ints([0, 0, .. others, -1]));
        var product = c.Emit.Op("MatMul", flat, c.Emit.Floats(matrix, transposed ? [columns, rows] : [rows, columns]));
        var shaped = c.Emit.Op("Reshape", product, c.Emit.Ints([0, 0, .. others, transposed ? n : transform.Bins, transposed ? channels : transform.Channels]));
        return c.Emit.Op("Transpose", [shaped], IntList("perm", inverse));
    }

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
