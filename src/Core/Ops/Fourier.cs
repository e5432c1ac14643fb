using System.Collections.Concurrent;
using JacService.Core.Onnx;
using TorchSharp;
using static JacService.Core.Ops.Scalars;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// DFT (opset 17; its axis an input from 20): the discrete Fourier transform along one axis of a real signal
/// [.., n, 1] or a complex one [.., n, 2] (real and imaginary parts last), padded with zeros or cut to dft_length L,
/// unnormalised forward and divided by L inverse. Onesided, a real signal's forward transform keeps the first L/2 + 1
/// bins (rfft), and an inverse reads a half spectrum [.., K, 2] as the conjugate-symmetric spectrum of a real signal
/// [.., L, 1], L = 2(K − 1) by default (irfft, as ONNX defines it since January 2026, ONNX Runtime runs it and torch's
/// exporter writes it). What Fourier neural operators and spectral layers export to. Each is a linear map of the input's
/// reals: the tangent takes the same transform, the cotangent its transpose. Short transforms run as one product with
/// that real matrix; longer ones through libtorch's FFT, the transpose as the conjugate transform (L times the inverse
/// for a forward DFT, 1/L times the forward for an inverse one; for irfft, the rfft of the cotangent weighted 2/L, 1/L
/// at the ends).
/// </summary>
internal static class Fourier
{
    /// <param name="Axis">The transformed axis of the value, counted from the front.</param>
    /// <param name="Length">L, the transform's length.</param>
    public readonly record struct Transform(long Axis, long Length, bool Inverse, bool OneSided)
    {
        /// <summary>An inverse of a half spectrum into a real signal (irfft).</summary>
        public bool RealInverse => Inverse && OneSided;

        /// <summary>The output's length along the axis.</summary>
        public long Bins => OneSided && !Inverse ? Length / 2 + 1 : Length;

        /// <summary>The output's last axis: 1 for irfft's real signal, else 2.</summary>
        public int Channels => RealInverse ? 1 : 2;

        /// <summary>
        /// What irfft's bin <paramref name="k"/> counts for, divided by L: twice between the ends (it stands for its
        /// conjugate too), once at them; the weights of its cotangent, the rfft of the signal's.
        /// </summary>
        public double[] HalfSpectrumWeights(long bins)
        {
            var weights = new double[bins];
            for (long k = 0; k < bins; k++) weights[k] = (k == 0 || 2 * k == Length ? 1.0 : 2.0) / Length;
            return weights;
        }

        /// <summary>
        /// The transform as a real matrix [n · channels, Bins · Channels]: row (j, part) holds what the input's j-th real
        /// (part 0) or imaginary (part 1) part adds to each output's real and imaginary parts; the rows of positions the
        /// length cuts off (or, for irfft, bins past L/2) are zero, and padding needs no rows. Angles from (j·k mod L),
        /// in double.
        /// </summary>
        public double[] DenseValues(long n, long channels)
        {
            long bins = Bins;
            int outputs = Channels;
            var values = new double[n * channels * bins * outputs];
            double sign = Inverse ? 1 : -1;
            long rows = Math.Min(n, RealInverse ? Length / 2 + 1 : Length);
            var halves = RealInverse ? HalfSpectrumWeights(rows) : null;
            for (long j = 0; j < rows; j++)
            {
                double factor = halves?[j] ?? (Inverse ? 1.0 / Length : 1);
                for (long k = 0; k < bins; k++)
                {
                    double angle = 2 * Math.PI * (j * k % Length) / Length;
                    double cos = Math.Cos(angle) * factor, sin = sign * Math.Sin(angle) * factor;
                    long re = (j * channels * bins + k) * outputs, im = ((j * channels + 1) * bins + k) * outputs;
                    values[re] = cos;
                    if (RealInverse)
                    {
                        values[im] = -sin;
                        continue;
                    }
                    values[re + 1] = sin;
                    if (channels == 2)
                    {
                        values[im] = -sin;
                        values[im + 1] = cos;
                    }
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
            var made = tensor(DenseValues(n, channels), [n * channels, Bins * Channels], ScalarType.Float64).to(type, device);
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
        Sizes.Elements([n, channels, transform.Bins, transform.Channels]) <= MaxDenseElements;

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
        Through(t, axis, transform.Matrix(t.size((int)axis), t.size(-1), t.dtype, t.device), transform.Channels);

    internal static Tensor PullDense(Transform transform, Tensor cotangent, long n, int channels) =>
        Through(cotangent, transform.Axis + 1, transform.Matrix(n, channels, cotangent.dtype, cotangent.device).t(), channels);

    internal static Tensor ApplyByFft(Transform transform, Tensor t, long axis)
    {
        if (transform.RealInverse) return fft.irfft(view_as_complex(t.contiguous()), transform.Length, axis).unsqueeze(-1);
        var pairs = Resized(t, axis, transform.Length);
        var signal = pairs.size(-1) == 1 ? pairs.select(-1, 0) : view_as_complex(pairs.contiguous());
        var bins = transform.Inverse ? fft.ifft(signal, dim: axis) : fft.fft_(signal, dim: axis);
        if (transform.OneSided) bins = bins.narrow(axis, 0, transform.Bins);
        return view_as_real(bins).contiguous();
    }

    internal static Tensor PullByFft(Transform transform, Tensor cotangent, long n, int channels)
    {
        long axis = transform.Axis + 1, length = transform.Length;
        if (transform.RealInverse)
        {
            var spectrum = view_as_real(fft.rfft(cotangent.select(-1, 0), length, axis));
            long used = Math.Min(n, length / 2 + 1);
            var weights = transform.HalfSpectrumWeights(used);
            long[] along = [.. Enumerable.Repeat(1L, (int)axis), used, .. Enumerable.Repeat(1L, (int)(spectrum.dim() - axis - 1))];
            var weighted = spectrum.narrow(axis, 0, used).mul(tensor(weights, along, spectrum.dtype, spectrum.device));
            return Resized(weighted, axis, n).contiguous();
        }
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
        bool realInverse = inverse && oneSided;
        long size = length ?? (realInverse ? 2 * (x[axis] - 1) : x[axis]);
        Shapes.Require(size >= 1, () => $"DFT dft_length {size} is not a length of 1 or more");
        Shapes.Require(!oneSided || inverse || x[^1] == 1, () => $"a onesided DFT takes a real signal [.., n, 1], got {Shapes.Text(x)}");
        Shapes.Require(!realInverse || x[^1] == 2, () => $"a onesided inverse DFT takes a half spectrum [.., n, 2], got {Shapes.Text(x)}");
        // numpy's irfft, which ONNX's reference calls, pads missing bins with zeros and ignores those past L/2. ONNX
        // Runtime 1.31, which serves Predict, agrees only where the bins are exactly L/2 + 1, or more for an even L
        // (measured on the rows: 0.26 apart for 4 bins to 8 points, 0.6 for 4 bins to 5).
        Shapes.Require(!realInverse || x[axis] == size / 2 + 1 || (size % 2 == 0 && x[axis] > size / 2 + 1),
            () => $"a onesided inverse DFT to length {size} takes its {size / 2 + 1} bins{(size % 2 == 0 ? " or more" : "")}, got {x[axis]}; pad or cut the spectrum first");
        return new Transform(axis, size, inverse, oneSided);
    }
}
