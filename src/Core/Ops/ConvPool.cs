using JacService.Core.Onnx;
using static JacService.Core.Ops.Scalars;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace JacService.Core.Ops;

/// <summary>
/// Conv, MaxPool, AveragePool (1-D and 2-D) and GlobalAveragePool. Each op is a linear map in its data input
/// (MaxPool: a gather at the argmax), so the tangent [K, N, ...] goes through the same map with K folded into N.
/// </summary>
internal static class ConvPool
{
    private sealed record Geometry(long[] Kernel, long[] Strides, long[] Dilations, long[] Begin, long[] End)
    {
        public bool Symmetric => Begin.SequenceEqual(End);

        /// <summary>F.pad's order: last spatial axis first, (begin, end) each.</summary>
        public long[] PadArgument => Enumerable.Range(0, Begin.Length).Reverse().SelectMany(i => new[] { Begin[i], End[i] }).ToArray();

        /// <summary>The 2-D kernel for <see cref="TiledPool"/> when the windows tile the input, else null.</summary>
        public long[]? Tiled(Tensor x, long[] spatial, long[] pooled) => TiledPool.Kernel2d(x.device, Kernel, Strides, Dilations, Begin, End, spatial, pooled);

        public bool TorchCanPad => Symmetric && Begin.Select((p, i) => p <= Kernel[i] / 2).All(ok => ok);

        /// <summary>
        /// ONNX's pooled length per spatial axis. In ceil mode a window that would start in the right padding is
        /// dropped (onnx/defs/nn/defs.cc: (output - 1) * stride &gt;= input + pad_begin). torch applies that rule to
        /// its own symmetric padding, but on an explicitly padded input it sees no right padding and keeps such
        /// windows (all -inf for MaxPool, 0/0 for AveragePool without count_include_pad).
        /// </summary>
        public long[] PooledShape(long[] spatial, bool ceil) => spatial.Select((length, i) =>
        {
            long span = length + Begin[i] + End[i] - ((Kernel[i] - 1) * Dilations[i] + 1);
            long output = (ceil ? (span + Strides[i] - 1) / Strides[i] : span / Strides[i]) + 1;
            return ceil && (output - 1) * Strides[i] >= length + Begin[i] ? output - 1 : output;
        }).ToArray();
    }

    /// <summary>Cuts the trailing spatial axes of a pooled tensor (with or without the basis axis) to ONNX's lengths.</summary>
    private static Tensor Trim(Tensor t, long[] pooled)
    {
        long first = t.dim() - pooled.Length;
        for (int i = 0; i < pooled.Length; i++)
            if (t.Dims()[first + i] > pooled[i]) t = t.narrow(first + i, 0, pooled[i]);
        return t;
    }

    /// <summary>The maxima and their flat spatial indices, by <see cref="TiledPool"/> when the windows tile the input.</summary>
    private static (Tensor Values, Tensor Indices) MaxWithIndices(Tensor input, Geometry g, long[] padding, bool ceil, long[]? tiled) =>
        tiled is not null && TiledPool.MaxWithIndices(input, tiled) is { } found ? found
        : g.Kernel.Length == 1 ? F.max_pool1d_with_indices(input, g.Kernel[0], g.Strides[0], padding[0], g.Dilations[0], ceil)
        : F.max_pool2d_with_indices(input, g.Kernel, g.Strides, padding, g.Dilations, ceil);

    public static string? ValidateSpatial(GraphNode node, int opset)
    {
        var autoPad = node.Attributes.String("auto_pad", "NOTSET");
        if (autoPad is not ("NOTSET" or "SAME_UPPER" or "SAME_LOWER" or "VALID")) return $"auto_pad '{autoPad}' is not known";
        if (node.Outputs.Skip(1).Any(o => o >= 0)) return "only the first output is supported";
        return null;
    }

    public static string? ValidatePool(GraphNode node, int opset)
    {
        if (node.Attributes.Ints("kernel_shape") is not { Length: 1 or 2 } k)
            return "kernel_shape must be given for 1 or 2 spatial axes";
        return ValidateSpatial(node, opset);
    }

    /// <summary>AveragePool takes dilations from opset 19, which libtorch's average pools do not have.</summary>
    public static string? ValidateAveragePool(GraphNode node, int opset) =>
        node.Attributes.Ints("dilations") is { } d && d.Any(v => v != 1)
            ? $"dilations [{string.Join(", ", d)}] are not supported (average pools of adjacent elements only)"
            : ValidatePool(node, opset);

    private static Geometry Layout(OpContext c, long[] spatial, long[] kernel)
    {
        int n = spatial.Length;
        var strides = c.Attr.Ints("strides") ?? Enumerable.Repeat(1L, n).ToArray();
        var dilations = c.Attr.Ints("dilations") ?? Enumerable.Repeat(1L, n).ToArray();
        var pads = c.Attr.Ints("pads") ?? new long[2 * n];
        Shapes.Require(kernel.Length == n && strides.Length == n && dilations.Length == n && pads.Length == 2 * n,
            () => $"kernel {Shapes.Text(kernel)}, strides, dilations or pads do not match {n} spatial axes");
        Shapes.Require(strides.All(s => s > 0) && dilations.All(d => d > 0) && kernel.All(k => k > 0) && pads.All(p => p >= 0),
            () => "kernel, strides and dilations must be positive and pads non-negative");
        var begin = pads[..n];
        var end = pads[n..];
        var autoPad = c.Attr.String("auto_pad", "NOTSET");
        if (autoPad is "SAME_UPPER" or "SAME_LOWER")
        {
            for (int i = 0; i < n; i++)
            {
                long output = (spatial[i] + strides[i] - 1) / strides[i];
                long total = Math.Max(0, (output - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - spatial[i]);
                begin[i] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2;
                end[i] = total - begin[i];
            }
        }
        else if (autoPad == "VALID")
        {
            begin = new long[n];
            end = new long[n];
        }
        for (int i = 0; i < n; i++)
        {
            long effective = (kernel[i] - 1) * dilations[i] + 1;
            long padded = spatial[i] + begin[i] + end[i];
            int axis = i;
            Shapes.Require(padded >= effective,
                () => $"window of {effective} does not fit spatial axis {axis} of size {spatial[axis]} with its padding");
        }
        return new Geometry(kernel, strides, dilations, begin, end);
    }

    private static long[] Spatial(Dual x, string op)
    {
        Shapes.Require(x.Rank is 3 or 4, () => $"{op} supports 1-D and 2-D inputs [N, C, L] or [N, C, H, W], got {Shapes.Text(x.Shape)}");
        return x.Shape[2..];
    }

    /// <summary>The padded input (when padding is asymmetric) and the output, each at most [N, C or Cout, ..padded spatial].</summary>
    public static long ConvAllocates(OpContext c)
    {
        long[] x = c.In(0).Shape, w = c.In(1).Shape;
        // Conv refuses these shapes when it runs.
        if (x.Length is not (3 or 4) || w.Length != x.Length) return 0;
        return Sizes.Times(Sizes.Times(x[0], Sizes.Plus(x[1], w[0])), PaddedSpatial(c, x[2..], w[2..]));
    }

    /// <summary>The uncropped output [N, C_out, ..s(n − 1) + d(k − 1) + 1 + output_padding], and as much again for the stuffed input.</summary>
    public static long ConvTransposeAllocates(OpContext c)
    {
        long[] x = c.In(0).Shape, w = c.In(1).Shape;
        // ConvTranspose refuses these shapes when it runs.
        if (x.Length is not (3 or 4) || w.Length != x.Length) return 0;
        int n = x.Length - 2;
        var strides = c.Attr.Ints("strides") ?? Enumerable.Repeat(1L, n).ToArray();
        var dilations = c.Attr.Ints("dilations") ?? Enumerable.Repeat(1L, n).ToArray();
        var outputPadding = c.Attr.Ints("output_padding") ?? new long[n];
        if (strides.Length != n || dilations.Length != n || outputPadding.Length != n) return 0;
        var full = Enumerable.Range(0, n).Select(i =>
            Sizes.Plus(Sizes.Plus(Sizes.Times(strides[i], Math.Max(1, x[2 + i])), Sizes.Times(dilations[i], Math.Max(1, w[2 + i]))), Math.Max(0, outputPadding[i])));
        var output = Sizes.Elements([x[0], Sizes.Times(w[1], Math.Max(1, c.Attr.Int("group", 1))), .. full]);
        return Sizes.Times(output, 2);
    }

    /// <summary>The padded input, the output and MaxPool's indices, each at most [N, C, ..padded spatial].</summary>
    public static long PoolAllocates(OpContext c)
    {
        long[] x = c.In(0).Shape;
        if (x.Length is not (3 or 4) || c.Attr.Ints("kernel_shape") is not { } kernel || kernel.Length != x.Length - 2) return 0;
        return Sizes.Times(3, Sizes.Elements([x[0], x[1], PaddedSpatial(c, x[2..], kernel)]));
    }

    /// <summary>
    /// Elements of the spatial axes with their padding, an upper bound for the output's too (strides are at least 1).
    /// Pads and dilations are attributes, so a hostile file can make them huge; SAME padding adds at most the window.
    /// </summary>
    private static long PaddedSpatial(OpContext c, long[] spatial, long[] kernel)
    {
        int n = spatial.Length;
        var pads = c.Attr.Ints("pads") ?? new long[2 * n];
        var dilations = c.Attr.Ints("dilations") ?? Enumerable.Repeat(1L, n).ToArray();
        if (pads.Length != 2 * n || dilations.Length != n || kernel.Length != n) return 0;
        return Sizes.Elements(Enumerable.Range(0, n).Select(i => Sizes.Sum([
            spatial[i], Math.Max(0, pads[i]), Math.Max(0, pads[i + n]), Sizes.Times(Math.Max(0, kernel[i] - 1), dilations[i])])));
    }

    public static Dual[] Conv(OpContext c)
    {
        var x = c.In(0);
        var w = c.In(1).Value;
        var bias = c.Optional(2)?.Value;
        var spatial = Spatial(x, "Conv");
        long group = c.Attr.Int("group", 1);
        Shapes.Require(w.dim() == x.Rank && group > 0 && x.Shape[1] == w.size(1) * group && w.size(0) % group == 0,
            () => $"Conv weight {Shapes.Text(w.Dims())} with group {group} does not fit input {Shapes.Text(x.Shape)}");
        Shapes.Require(bias is null || bias.Dims().SequenceEqual([w.size(0)]),
            () => $"Conv bias {Shapes.Text(bias!.Dims())} does not match {w.size(0)} output channels");
        var g = Layout(c, spatial, c.Attr.Ints("kernel_shape") ?? w.Dims()[2..]);
        Shapes.Require(g.Kernel.SequenceEqual(w.Dims()[2..]), () => $"kernel_shape {Shapes.Text(g.Kernel)} differs from the weight {Shapes.Text(w.Dims())}");

        Tensor Apply(Tensor input, Tensor? b)
        {
            var padded = g.Symmetric ? input : F.pad(input, g.PadArgument);
            long[] padding = g.Symmetric ? g.Begin : new long[spatial.Length];
            return spatial.Length == 1
                ? F.conv1d(padded, w, b, g.Strides[0], padding[0], g.Dilations[0], group)
                : F.conv2d(padded, w, b, g.Strides, padding, g.Dilations, group);
        }

        var y = Apply(x.Value, bias);
        return [new Dual(y, x.Tangent is null ? null : Tangents.FoldBasis(x.Tangent, t => Apply(t, null)))];
    }

    /// <summary>ConvTranspose with explicit pads (what exporters write): auto_pad and output_shape are refused at load.</summary>
    public static string? ValidateTransposed(GraphNode node, int opset)
    {
        if (node.Attributes.Has("output_shape")) return "output_shape is not supported; export with explicit pads and output_padding";
        var autoPad = node.Attributes.String("auto_pad", "NOTSET");
        if (autoPad is not ("NOTSET" or "VALID")) return $"auto_pad '{autoPad}' is not supported; export with explicit pads";
        return ValidateSpatial(node, opset);
    }

    /// <summary>
    /// ConvTranspose: the transposed convolution of x by w ([C_in, C_out / group, ..kernel]) to its full size
    /// s(n − 1) + d(k − 1) + 1 + output_padding, cropped by the pads, plus the bias; the tangent alike without the bias.
    /// </summary>
    public static Dual[] ConvTranspose(OpContext c)
    {
        var x = c.In(0);
        var w = c.In(1).Value;
        var bias = c.Optional(2)?.Value;
        var (g, group, full, outputPadding) = TransposedLayout(c, x.Shape, w);
        var transposed = TransposedConvolution(w, group, g, new long[full.Length], full, outputPadding, w.device_type);
        var crop = g.PadArgument.Select(p => -p).ToArray();
        Tensor Apply(Tensor v) => g.Begin.Concat(g.End).All(p => p == 0) ? transposed(v) : F.pad(transposed(v), crop);
        var y = Apply(x.Value);
        if (bias is not null)
        {
            Shapes.Require(bias.Dims().SequenceEqual([y.size(1)]), () => $"ConvTranspose bias {Shapes.Text(bias.Dims())} does not match {y.size(1)} output channels");
            y = y.Plus(bias.reshape([y.size(1), .. Enumerable.Repeat(1L, full.Length)]));
        }
        return [new Dual(y, x.Tangent is null ? null : Tangents.FoldBasis(x.Tangent, Apply))];
    }

    /// <summary>ConvTranspose's transpose is the convolution by the same weights of the cotangent padded back to the full size.</summary>
    public static Tensor?[] ConvTransposeVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return result;
        var w = c.In(1);
        var (g, group, _, _) = TransposedLayout(c.Primal(), c.In(0).Dims(), w);
        bool oneD = g.Kernel.Length == 1;
        result[0] = Tangents.FoldBasis(ct, v =>
        {
            var padded = F.pad(v, g.PadArgument);
            return oneD
                ? F.conv1d(padded, w, null, g.Strides[0], 0, g.Dilations[0], group)
                : F.conv2d(padded, w, null, g.Strides, [0, 0], g.Dilations, group);
        });
        return result;
    }

    /// <summary>ConvTranspose's geometry, group, full (uncropped) output size and output_padding, checked against x and w.</summary>
    private static (Geometry G, long Group, long[] Full, long[] OutputPadding) TransposedLayout(OpContext c, long[] x, Tensor w)
    {
        Shapes.Require(x.Length is 3 or 4, () => $"ConvTranspose supports 1-D and 2-D inputs [N, C, ...], got {Shapes.Text(x)}");
        int n = x.Length - 2;
        long group = c.Attr.Int("group", 1);
        Shapes.Require(w.dim() == x.Length && group > 0 && w.size(0) == x[1] && x[1] % group == 0,
            () => $"ConvTranspose weight {Shapes.Text(w.Dims())} with group {group} does not fit input {Shapes.Text(x)}");
        var kernel = c.Attr.Ints("kernel_shape") ?? w.Dims()[2..];
        Shapes.Require(kernel.SequenceEqual(w.Dims()[2..]), () => $"kernel_shape {Shapes.Text(kernel)} differs from the weight {Shapes.Text(w.Dims())}");
        var strides = c.Attr.Ints("strides") ?? Enumerable.Repeat(1L, n).ToArray();
        var dilations = c.Attr.Ints("dilations") ?? Enumerable.Repeat(1L, n).ToArray();
        var pads = c.Attr.String("auto_pad", "NOTSET") == "VALID" ? new long[2 * n] : c.Attr.Ints("pads") ?? new long[2 * n];
        var outputPadding = c.Attr.Ints("output_padding") ?? new long[n];
        Shapes.Require(strides.Length == n && dilations.Length == n && pads.Length == 2 * n && outputPadding.Length == n,
            () => $"strides, dilations, pads or output_padding do not match {n} spatial axes");
        Shapes.Require(strides.All(v => v > 0) && dilations.All(v => v > 0) && pads.All(v => v >= 0)
                && outputPadding.Select((p, i) => p >= 0 && p < Math.Max(strides[i], dilations[i])).All(ok => ok),
            () => "strides and dilations must be positive, pads non-negative, and output_padding below the stride or the dilation");
        var full = Enumerable.Range(0, n).Select(i => strides[i] * (x[2 + i] - 1) + dilations[i] * (kernel[i] - 1) + 1 + outputPadding[i]).ToArray();
        Shapes.Require(full.Select((f, i) => f > pads[i] + pads[n + i]).All(ok => ok),
            () => $"ConvTranspose pads {Shapes.Text(pads)} crop away the whole output {Shapes.Text(full)}");
        return (new Geometry(kernel, strides, dilations, pads[..n], pads[n..]), group, full, outputPadding);
    }

    public static Dual[] MaxPool(OpContext c)
    {
        var x = c.In(0);
        var spatial = Spatial(x, "MaxPool");
        var g = Layout(c, spatial, c.Attr.Ints("kernel_shape")!);
        bool ceil = c.Attr.Int("ceil_mode", 0) != 0;
        bool explicitPad = !g.TorchCanPad;
        long[] padding = explicitPad ? new long[spatial.Length] : g.Begin;

        var pooled = g.PooledShape(spatial, ceil);
        var tiled = g.Tiled(x.Value, spatial, pooled);
        if (x.Tangent is null && tiled is not null) return [new Dual(TiledPool.Max(x.Value, tiled), null)];

        var input = explicitPad ? F.pad(x.Value, g.PadArgument, value: double.NegativeInfinity) : x.Value;
        var (y, indices) = MaxWithIndices(input, g, padding, ceil, tiled);
        y = Trim(y, pooled);
        indices = Trim(indices, pooled);
        if (x.Tangent is not { } t) return [new Dual(y, null)];

        // The tangent of a max is the tangent at the argmax: gather over the flattened spatial axes.
        if (explicitPad) t = Tangents.FoldBasis(t, v => F.pad(v, g.PadArgument));
        var ts = t.Dims();
        var flat = t.reshape(ts[0], ts[1], ts[2], -1);
        var index = indices.reshape(1, ts[1], ts[2], -1).expand(ts[0], -1, -1, -1);
        return [new Dual(y, flat.gather(3, index).reshape(Tangents.WithBasis(ts[0], y.Dims())))];
    }

    public static Dual[] AveragePool(OpContext c)
    {
        var x = c.In(0);
        var spatial = Spatial(x, "AveragePool");
        var g = Layout(c, spatial, c.Attr.Ints("kernel_shape")!);
        bool ceil = c.Attr.Int("ceil_mode", 0) != 0;
        bool countPad = c.Attr.Int("count_include_pad", 0) != 0;

        var pooled = g.PooledShape(spatial, ceil);
        Tensor Pool(Tensor input, long[] padding, bool includePad) => Trim(spatial.Length == 1
            ? F.avg_pool1d(input, g.Kernel[0], g.Strides[0], padding[0], ceil, includePad)
            : F.avg_pool2d(input, g.Kernel, g.Strides, padding, ceil, includePad), pooled);

        Func<Tensor, Tensor> apply;
        if (g.Tiled(x.Value, spatial, pooled) is { } tiled) apply = v => TiledPool.Mean(v, tiled);
        else if (g.TorchCanPad) apply = v => Pool(v, g.Begin, countPad);
        else
        {
            // Asymmetric padding: pad explicitly; without count_include_pad divide by how many real cells each window saw.
            var zero = new long[spatial.Length];
            Tensor? share = countPad ? null : PoolShare(spatial, g, ceil, x.Value.dtype, spatial.Length == 1);
            apply = v =>
            {
                var sums = Pool(F.pad(v, g.PadArgument), zero, true);
                return share is null ? sums : sums / share;
            };
        }
        var y = apply(x.Value);
        return [new Dual(y, x.Tangent is null ? null : Tangents.FoldBasis(x.Tangent, apply))];
    }

    public static Dual[] GlobalAveragePool(OpContext c)
    {
        var x = c.In(0);
        Shapes.Require(x.Rank >= 3, () => $"GlobalAveragePool needs [N, C, ...], got {Shapes.Text(x.Shape)}");
        var dims = Enumerable.Range(2, (int)x.Rank - 2).Select(i => (long)i).ToArray();
        return [new Dual(x.Value.mean(dims, keepdim: true), x.Tangent?.mean(Tangents.Shift(dims), keepdim: true))];
    }

    // ---- Reverse rules ----------------------------------------------------------------------------------------
    // Every map here is linear in x, and libtorch has its transpose: a transposed convolution for Conv, a scatter at
    // the argmax for MaxPool, avg_pool2d_backward for AveragePool. The basis axis is folded into N for them.

    public static Tensor?[] ConvVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return result;
        var x = c.In(0);
        var w = c.In(1);
        var spatial = x.Dims()[2..];
        long group = c.Attr.Int("group", 1);
        var g = Layout(c.Primal(), spatial, c.Attr.Ints("kernel_shape") ?? w.Dims()[2..]);
        long[] padding = g.Symmetric ? g.Begin : new long[spatial.Length];
        // The forward ran on the padded input when its padding was asymmetric; the transpose recovers that size and crops.
        var size = g.Symmetric ? spatial : spatial.Select((d, i) => d + g.Begin[i] + g.End[i]).ToArray();
        var outSize = ct.Dims()[3..];
        // Rows the strided forward never reached are restored by output_padding (always < stride).
        var outputPadding = size.Select((d, i) => d + 2 * padding[i] - ((outSize[i] - 1) * g.Strides[i] + g.Dilations[i] * (g.Kernel[i] - 1) + 1)).ToArray();
        var transposed = TransposedConvolution(w, group, g, padding, size, outputPadding, ct.device_type);
        result[0] = Tangents.FoldBasis(ct, v => g.Symmetric ? transposed(v) : F.pad(transposed(v), g.PadArgument.Select(p => -p).ToArray()));
        return result;
    }

    /// <summary>
    /// The transposed convolution by <paramref name="w"/> ([C_in, C_out / group, ..kernel], conv_transpose's layout) of
    /// [N, C_in, ..] to [N, C_out, ..size], with symmetric <paramref name="padding"/> taken off each side and
    /// <paramref name="outputPadding"/> cells added at the end: Conv's transpose, and ConvTranspose itself.
    /// </summary>
    private static Func<Tensor, Tensor> TransposedConvolution(Tensor w, long group, Geometry g, long[] padding, long[] size, long[] outputPadding,
        TorchSharp.DeviceType device)
    {
        bool oneD = size.Length == 1;
        // With unit strides (on the CPU, any: below) the transpose is itself a convolution, with the kernel flipped and its
        // channel axes swapped per group and padding d(k - 1) - p; libtorch's convolution is several times faster here than its transposed
        // one (small_cnn's first layer: 15 ms against ~3 ms per batch of 256).
        var flippedPadding = padding.Select((p, i) => g.Dilations[i] * (g.Kernel[i] - 1) - p).ToArray();
        // Down to one channel (the first layer on one-channel images), a convolution leaves most of oneDNN's vector lanes
        // idle. The per-tap products as one matrix product, summed back into place by col2im (fold), took 2.6-3.7 ms
        // against 4.8-6.8 ms for small_cnn's first layer at 256 rows, and 29-34 against 51-57 ms at 2,560; with four
        // channels per group it was 2.8-3.5x slower, so it stays with one (--conv-probe, docs/benchmarks.md).
        bool viaFold = !oneD && group == 1 && w.size(1) == 1;
        // On the CPU every other transpose is a convolution too, of the cotangent with stride - 1 zeros stuffed between
        // its cells (s² more products for a stride of s): libtorch 2.10's CPU transposed convolution (oneDNN 3.7.1's
        // deconvolution, float32) answers wrongly on one thread, as executors run (Batching:IntraOpThreads=1). On the op
        // row "Conv 2-D auto_pad SAME_UPPER stride 2" 200 of 200 calls dropped a kernel tap (1 of 200 on two threads); its
        // convolution was right in all of them (ConvTransposeTests).
        bool onCpu = device == TorchSharp.DeviceType.CPU;
        bool asConvolution = !viaFold && (onCpu || g.Strides.All(s => s == 1) && flippedPadding.All(p => p >= 0));
        var flipped = asConvolution ? FlippedKernel(w, group) : null;
        var taps = viaFold ? w.reshape(w.size(0), -1).t() : null;
        return v =>
        {
            var inSize = v.Dims()[2..];
            if (taps is not null)
                return F.fold(LinearAlgebra.Product(taps, v.reshape(v.size(0), v.size(1), inSize[0] * inSize[1])), (size[0], size[1]),
                    (g.Kernel[0], g.Kernel[1]), (g.Dilations[0], g.Dilations[1]), (padding[0], padding[1]), (g.Strides[0], g.Strides[1]));
            if (flipped is not null)
            {
                var stuffed = Stuffed(v, g.Strides, outputPadding);
                var inner = flippedPadding.Select(p => Math.Max(p, 0)).ToArray();
                var r = oneD
                    ? F.conv1d(stuffed, flipped, null, 1, inner[0], g.Dilations[0], group)
                    : F.conv2d(stuffed, flipped, null, [1, 1], inner, g.Dilations, group);
                // Padding past the kernel's reach (p > d(k - 1)) crops the result instead.
                for (int i = 0; i < flippedPadding.Length; i++)
                    if (flippedPadding[i] < 0) r = r.narrow(2 + i, -flippedPadding[i], r.size(2 + i) + 2 * flippedPadding[i]);
                return r;
            }
            return oneD
                ? nn.functional.conv_transpose2d(v.unsqueeze(2), w.unsqueeze(2), null, [1, g.Strides[0]], [0, padding[0]],
                    [0, outputPadding[0]], [1, g.Dilations[0]], group).squeeze(2)
                : nn.functional.conv_transpose2d(v, w, null, g.Strides, padding, outputPadding, g.Dilations, group);
        };
    }

    /// <summary>
    /// [N, C, ..spatial] with stride - 1 zeros between cells along each spatial axis and <paramref name="outputPadding"/>
    /// zeros after them: a strided transposed convolution is the unit-stride convolution of this by the flipped kernel.
    /// </summary>
    private static Tensor Stuffed(Tensor v, long[] strides, long[] outputPadding)
    {
        if (strides.All(s => s == 1) && outputPadding.All(p => p == 0)) return v;
        var dims = v.Dims();
        var reach = strides.Select((s, i) => (dims[2 + i] - 1) * s + 1).ToArray();
        var stuffed = zeros([dims[0], dims[1], .. reach.Select((r, i) => r + outputPadding[i])], v.dtype, v.device);
        var cells = stuffed;
        for (int i = 0; i < strides.Length; i++) cells = cells.slice(2 + i, 0, reach[i], strides[i]);
        cells.copy_(v);
        return stuffed;
    }

    /// <summary>[Cout, Cin/g, ..k] to [Cin, Cout/g, ..k] group by group, flipped along every spatial axis.</summary>
    private static Tensor FlippedKernel(Tensor w, long group)
    {
        var s = w.Dims();
        long outPerGroup = s[0] / group, inPerGroup = s[1];
        var spatialAxes = Enumerable.Range(2, s.Length - 2).Select(a => (long)a).ToArray();
        return w.reshape([group, outPerGroup, inPerGroup, .. s[2..]]).transpose(1, 2)
            .reshape([group * inPerGroup, outPerGroup, .. s[2..]]).flip(spatialAxes);
    }

    public static Tensor?[] MaxPoolVjp(VjpContext c)
    {
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return [null];
        var x = c.In(0);
        var spatial = x.Dims()[2..];
        var g = Layout(c.Primal(), spatial, c.Attr.Ints("kernel_shape")!);
        bool ceil = c.Attr.Int("ceil_mode", 0) != 0;
        bool explicitPad = !g.TorchCanPad;
        long[] padding = explicitPad ? new long[spatial.Length] : g.Begin;
        var input = explicitPad ? F.pad(x, g.PadArgument, value: double.NegativeInfinity) : x;
        var pooled = g.PooledShape(spatial, ceil);
        var (_, indices) = MaxWithIndices(input, g, padding, ceil, g.Tiled(x, spatial, pooled));
        indices = Trim(indices, pooled);

        // The transpose of the gather at the argmax: scatter back to it, adding where windows overlap.
        long k = ct.size(0), n = x.size(0), channels = x.size(1);
        var flat = ct.reshape(k, n, channels, -1);
        var index = indices.reshape(1, n, channels, -1).expand(k, -1, -1, -1);
        var scattered = zeros([k, n, channels, Shapes.Product(input.Dims()[2..])], ct.dtype).scatter_add_(3, index, flat)
            .reshape([k, .. input.Dims()]);
        return [explicitPad ? F.pad(scattered, g.PadArgument.Select(p => -p).ToArray()) : scattered];
    }

    public static Tensor?[] AveragePoolVjp(VjpContext c)
    {
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return [null];
        var x = c.In(0);
        var spatial = x.Dims()[2..];
        var g = Layout(c.Primal(), spatial, c.Attr.Ints("kernel_shape")!);
        bool ceil = c.Attr.Int("ceil_mode", 0) != 0;
        bool countPad = c.Attr.Int("count_include_pad", 0) != 0;
        bool oneD = spatial.Length == 1;

        // avg_pool2d_backward reads only the shape of the original input; 1-D pools run as 2-D ones of height 1.
        Tensor Backward(Tensor v, long[] inputSpatial, long[] padding, bool includePad)
        {
            long[] shape = [v.size(0), v.size(1), .. inputSpatial];
            return oneD
                ? F.avg_pool2d_backward(v.unsqueeze(2), empty([shape[0], shape[1], 1, shape[2]], v.dtype), [1, g.Kernel[0]], [1, g.Strides[0]],
                    [0, padding[0]], ceil, includePad).squeeze(2)
                : F.avg_pool2d_backward(v, empty(shape, v.dtype), g.Kernel, g.Strides, padding, ceil, includePad);
        }

        if (g.Tiled(x, spatial, g.PooledShape(spatial, ceil)) is { } tiled)
            return [Tangents.FoldBasis(ct, v => TiledPool.MeanTranspose(v, tiled, spatial))];
        if (g.TorchCanPad) return [Tangents.FoldBasis(ct, v => Backward(v, spatial, g.Begin, countPad))];
        var zero = new long[spatial.Length];
        var padded = spatial.Select((d, i) => d + g.Begin[i] + g.End[i]).ToArray();
        // The forward divided by each window's share of real cells; the transpose divides the cotangent alike.
        Tensor? share = countPad ? null : PoolShare(spatial, g, ceil, x.dtype, oneD);
        var crop = g.PadArgument.Select(p => -p).ToArray();
        // torch pooled the padded input without knowing which padding was ONNX's, so it may have had one more window
        // per axis (dropped by the forward); that window's cotangent is zero.
        var torchPooled = (g with { Begin = zero, End = zero }).PooledShape(padded, ceil);
        var scaled = share is null ? ct : ct / share;
        var extra = Enumerable.Range(0, spatial.Length).Reverse().SelectMany(i => new[] { 0L, torchPooled[i] - ct.Dims()[^(spatial.Length - i)] }).ToArray();
        if (extra.Any(e => e > 0)) scaled = F.pad(scaled, extra);
        return [Tangents.FoldBasis(scaled, v => F.pad(Backward(v, padded, zero, true), crop))];
    }

    /// <summary>For each window of a pool over explicitly padded input, the fraction of its cells that are real.</summary>
    private static Tensor PoolShare(long[] spatial, Geometry g, bool ceil, ScalarType dtype, bool oneD)
    {
        var cells = F.pad(ones([1, 1, .. spatial], dtype), g.PadArgument);
        return Trim(oneD
            ? F.avg_pool1d(cells, g.Kernel[0], g.Strides[0], 0, ceil, true)
            : F.avg_pool2d(cells, g.Kernel, g.Strides, new long[2], ceil, true), g.PooledShape(spatial, ceil));
    }

    public static Tensor?[] GlobalAveragePoolVjp(VjpContext c)
    {
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return [null];
        var x = c.In(0);
        long count = Shapes.Product(x.Dims()[2..]);
        return [ct.expand(Tangents.WithBasis(ct.size(0), x.Dims())) / S(count)];
    }
}
