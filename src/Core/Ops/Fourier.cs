using System.Collections.Concurrent;
using JacService.Core.Onnx;
using TorchSharp;
using static JacService.Core.Ops.Scalars;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// DFT (opset 17; its axis an input from 20): the discrete Fourier transform along one axis of a real signal
/// [.., n, 1] or a complex one [.., n, 2] (real and imaginary parts last), padded with zeros or cut to dft_length L,
/// unnormalised forward and divided by L inverse, only the first L/2 + 1 bins of a real signal's forward transform where
/// onesided; the result is complex, [.., L or L/2 + 1, 2]. What Fourier neural operators and spectral layers export to.
/// An inverse with onesided is refused at load: ONNX's reference cuts its output, where ONNX's text and ONNX Runtime read
/// a half spectrum into a real signal. A linear map of the input's
/// reals: the tangent takes the same transform, the cotangent its transpose, the conjugate transform (L times the
/// inverse for a forward DFT, 1/L times the forward for an inverse one) of the bins padded back to L, cut or padded back
/// to n, and its real part for a real signal.
/// </summary>
internal static class Fourier
{
    /// <param name="Axis">The transformed axis of the value, counted from the front.</param>
    /// <param name="Length">L, the transform's length.</param>
    public readonly record struct Transform(long Axis, long Length, bool Inverse, bool OneSided)
    {
        public long Bins => OneSided ? Length / 2 + 1 : Length;

        /// <summary>
        /// The transform as a real matrix [n · channels, Bins · 2]: row (j, part) holds what the signal's j-th real
        /// (part 0) or imaginary (part 1) part adds to each bin's real and imaginary parts; the rows of positions the
        /// length cuts off are zero, and padding needs no rows. Angles from (j·k mod L), in double.
        /// </summary>
        public double[] DenseValues(long n, long channels)
        {
            long bins = Bins;
            var values = new double[n * channels * bins * 2];
            double sign = Inverse ? 1 : -1, scale = Inverse ? 1.0 / Length : 1;
            for (long j = 0; j < Math.Min(n, Length); j++)
                for (long k = 0; k < bins; k++)
                {
                    double angle = 2 * Math.PI * (j * k % Length) / Length;
                    double cos = Math.Cos(angle) * scale, sin = sign * Math.Sin(angle) * scale;
                    long re = (j * channels * bins + k) * 2;
                    values[re] = cos;
                    values[re + 1] = sin;
                    if (channels == 2)
                    {
                        long im = ((j * channels + 1) * bins + k) * 2;
                        values[im] = -sin;
                        values[im + 1] = cos;
                    }
                }
            return values;
        }

        /// <summary>
        /// <see cref="DenseValues"/> on the device, kept per shape, type and device for the process (up to
        /// <see cref="MaxKeptMatrices"/>; past that, made per call in the caller's dispose scope).
        /// </summary>
        public Tensor Matrix(long n, long channels, ScalarType type, Device device)
        {
            var key = (this with { Axis = 0 }, n, channels, type, device.type, device.index);
            if (Matrices.TryGetValue(key, out var kept)) return kept;
            var made = tensor(DenseValues(n, channels), [n * channels, Bins * 2], ScalarType.Float64).to(type, device);
            if (Matrices.Count >= MaxKeptMatrices) return made;
            made.DetachFromDisposeScope();
            if (Matrices.TryAdd(key, made)) return made;
            made.Dispose();
            return Matrices[key];
        }
    }

    /// <summary>At most 256 KiB each (float32): 16 MiB at most for the process, whatever models it loads.</summary>
    private const int MaxKeptMatrices = 64;

    private static readonly ConcurrentDictionary<(Transform Transform, long N, long Channels, ScalarType Type, DeviceType Device, int Index), Tensor> Matrices = new();

    public static string? Validate(GraphNode node, int opset)
    {
        if (opset >= 20 && node.Attributes.Has("axis")) return "axis is an input from opset 20, not an attribute";
        if (opset < 20 && node.Inputs.Length > 2 && node.Inputs[2] >= 0) return $"DFT takes its axis as an input from opset 20 (the model's is {opset})";
        // ONNX's reference cuts the inverse's output to half; ONNX's text and ONNX Runtime 1.31 read a half spectrum into a real signal.
        if (node.Attributes.Int("onesided", 0) != 0 && node.Attributes.Int("inverse", 0) != 0)
            return "an inverse DFT with onesided 1 is not supported (its definitions disagree); export the inverse of the full spectrum";
        return null;
    }

    public static Tensor Forward(OpContext c, Tensor x) => Apply(Of(c.Node, c.Opset, x.Dims(), c.Optional(1)?.Value, c.Optional(2)?.Value), x, 0);

    public static Tensor Push(OpContext c, Tensor tangent, Tensor y) =>
        Apply(Of(c.Node, c.Opset, c.In(0).Shape, c.Optional(1)?.Value, c.Optional(2)?.Value), tangent, 1);

    public static Tensor Pull(VjpContext c, Tensor cotangent)
    {
        var x = c.In(0).Dims();
        var transform = Of(c.Node, c.Opset, x, c.Optional(1), c.Optional(2));
        long n = x[transform.Axis];
        int channels = (int)x[^1];
        return IsDense(transform, n, channels) ? PullDense(transform, cotangent, n, channels) : PullByFft(transform, cotangent, n, channels);
    }

    /// <summary>The transform of <paramref name="t"/>, whose axes after the first <paramref name="lead"/> are the value's.</summary>
    private static Tensor Apply(Transform transform, Tensor t, int lead)
    {
        long axis = transform.Axis + lead;
        return IsDense(transform, t.size((int)axis), t.size(-1)) ? ApplyDense(transform, t, axis) : ApplyByFft(transform, t, axis);
    }

    /// <summary>
    /// Short transforms run as one matrix product with the transform's real matrix (<see cref="Transform.Matrix"/>):
    /// FFT calls on signals of a few dozen points, once per row of a derivative's directions, cost more than the
    /// arithmetic.
    /// </summary>
    public static bool IsDense(Transform transform, long n, long channels) =>
        Sizes.Elements([n, channels, transform.Bins, 2]) <= MaxDenseElements;

    /// <summary>The largest dense matrix, in elements: 256 KiB in float32.</summary>
    public const long MaxDenseElements = 1 << 16;

    /// <summary>
    /// <paramref name="t"/>'s pairs along <paramref name="axis"/> (and its last axis) times <paramref name="matrix"/>, whose
    /// rows are those pairs flattened and whose columns come back as pairs of <paramref name="channels"/>.
    /// </summary>
    private static Tensor Through(Tensor t, long axis, Tensor matrix, int channels)
    {
        var moved = t.movedim([axis], [-2L]);
        var lead = moved.Dims()[..^2];
        var product = moved.reshape([.. lead, -1]).matmul(matrix).reshape([.. lead, -1, channels]);
        return product.movedim([-2L], [axis]).contiguous();
    }

    internal static Tensor ApplyDense(Transform transform, Tensor t, long axis) =>
        Through(t, axis, transform.Matrix(t.size((int)axis), t.size(-1), t.dtype, t.device), 2);

    internal static Tensor PullDense(Transform transform, Tensor cotangent, long n, int channels) =>
        Through(cotangent, transform.Axis + 1, transform.Matrix(n, channels, cotangent.dtype, cotangent.device).t(), channels);

    internal static Tensor ApplyByFft(Transform transform, Tensor t, long axis)
    {
        var pairs = Resized(t, axis, transform.Length);
        var signal = pairs.size(-1) == 1 ? pairs.select(-1, 0) : view_as_complex(pairs.contiguous());
        var bins = transform.Inverse ? fft.ifft(signal, dim: axis) : fft.fft_(signal, dim: axis);
        if (transform.OneSided) bins = bins.narrow(axis, 0, transform.Bins);
        return view_as_real(bins).contiguous();
    }

    internal static Tensor PullByFft(Transform transform, Tensor cotangent, long n, int channels)
    {
        long axis = transform.Axis + 1, length = transform.Length;
        var pairs = transform.OneSided ? Resized(cotangent, axis, length) : cotangent;
        var bins = view_as_complex(pairs.contiguous());
        var signal = view_as_real(transform.Inverse ? fft.fft_(bins, dim: axis).div(S(length)) : fft.ifft(bins, dim: axis).mul(S(length)));
        signal = Resized(signal, axis, n);
        return channels == 1 ? signal.narrow(-1, 0, 1).contiguous() : signal.contiguous();
    }

    /// <summary>
    /// Real pairs (or a real signal) [.., m, .., 1 or 2] cut or padded with zeros along <paramref name="axis"/> to
    /// <paramref name="size"/>: kept in reals, where libtorch's constant padding takes any rank.
    /// </summary>
    private static Tensor Resized(Tensor t, long axis, long size)
    {
        long m = t.size((int)axis);
        if (size <= m) return size == m ? t : t.narrow(axis, 0, size);
        var pads = new long[2 * (t.dim() - axis)];
        pads[^1] = size - m;
        return nn.functional.pad(t, pads);
    }

    private static Transform Of(GraphNode node, int opset, long[] x, Tensor? length, Tensor? axisInput) =>
        For(x, opset >= 20 ? axisInput is null ? -2 : HostValues.Ints(axisInput)[0] : node.Attributes.Int("axis", 1),
            length is null ? null : HostValues.Ints(length)[0], node.Attributes.Int("inverse", 0) != 0, node.Attributes.Int("onesided", 0) != 0);

    /// <summary>The transform of a signal of shape <paramref name="x"/> along <paramref name="axis"/> as the node gives it.</summary>
    public static Transform For(long[] x, long axis, long? length, bool inverse, bool oneSided)
    {
        int rank = x.Length;
        Shapes.Require(rank >= 3 && x[^1] is 1 or 2,
            () => $"DFT takes a signal [batch, .., n, 1] (real) or [batch, .., n, 2] (complex), got {Shapes.Text(x)}");
        if (axis < 0) axis += rank;
        Shapes.Require(axis >= 0 && axis < rank - 1, () => $"DFT axis {axis} is outside the signal's axes of {Shapes.Text(x)} (the last holds real and imaginary parts)");
        Shapes.Require(axis != 0, () => "DFT along the batch axis (axis 0) would mix samples");
        long size = length ?? x[axis];
        Shapes.Require(size >= 1, () => $"DFT dft_length {size} is not a length of 1 or more");
        Shapes.Require(!oneSided || x[^1] == 1, () => $"a onesided DFT takes a real signal [.., n, 1], got {Shapes.Text(x)}");
        return new Transform(axis, size, inverse, oneSided);
    }
}
