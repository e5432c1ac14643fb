using static JacService.Core.Ops.Scalars;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace JacService.Core.Ops;

/// <summary>
/// Pooling whose windows tile the input (stride equal to the kernel, no padding, no dilation: the usual 2×2 pool
/// of a CNN), computed as vectorised elementwise passes over one permuted copy, a pass per cell of the window.
/// libtorch's CPU pooling kernels walk channels-first windows in scalar code: for [256, 8, 28, 28] max_pool2d took
/// 11 ms here against 1-5 ms for these passes, and avg_pool2d 3-5 ms against 1-1.6 ms (docs/benchmarks.md, "Tiled
/// pooling"). The results are
/// libtorch's: the same maxima (up to the sign of a zero), the same argmax (the first maximum in the window's
/// row-major order, as its kernel's scan picks), and sums taken in the same order. 1-D pools run as 2-D ones of
/// height 1.
/// </summary>
internal static class TiledPool
{
    /// <summary>
    /// The kernel as a 2-D one when the windows tile the input and ONNX's pooled lengths are the tile counts (rows
    /// past the last whole window are left out, as floor mode does); otherwise null, and libtorch's kernels pool.
    /// Only on the CPU: libtorch's CUDA pooling kernels are parallel already, and the finiteness read of
    /// <see cref="MaxWithIndices"/> would wait for the device (and break a graph capture).
    /// </summary>
    public static long[]? Kernel2d(Device device, long[] kernel, long[] strides, long[] dilations, long[] begin, long[] end, long[] spatial, long[] pooled)
    {
        if (device.type != TorchSharp.DeviceType.CPU) return null;
        for (int i = 0; i < kernel.Length; i++)
            if (strides[i] != kernel[i] || dilations[i] != 1 || begin[i] != 0 || end[i] != 0 || pooled[i] != spatial[i] / kernel[i])
                return null;
        return kernel.Length == 1 ? [1, kernel[0]] : kernel;
    }

    /// <summary>The maxima of each window of x, [N, C, ..pooled].</summary>
    public static Tensor Max(Tensor x, long[] kernel2d)
    {
        var (cells, oneD) = Cells(x, kernel2d);
        var max = Reduce(cells, (a, b) => maximum(a, b));
        return oneD ? max.squeeze(2) : max;
    }

    /// <summary>
    /// The maxima and libtorch's indices of them (the flat position in the input's spatial axes, int64), or null
    /// when a maximum is not finite: which NaN or infinity libtorch picks is its kernel's business, so it decides.
    /// </summary>
    public static (Tensor Values, Tensor Indices)? MaxWithIndices(Tensor x, long[] kernel2d)
    {
        long width = x.size(-1);
        // The offers below are whole numbers up to twice the window's span, computed in x's type: float32 holds them
        // exactly up to 2^24, half types only up to 2^11, so those (and integers) are left to libtorch.
        if (x.dtype is not (ScalarType.Float32 or ScalarType.Float64) || 2 * kernel2d[0] * width > 1 << 24) return null;
        var (cells, oneD) = Cells(x, kernel2d);
        var max = Reduce(cells, (a, b) => maximum(a, b));
        // One reduction and a read tell whether every maximum is finite (an overflowing sum only sends it to libtorch).
        if (!double.IsFinite(max.sum().to_type(ScalarType.Float64).item<double>())) return null;
        // The first cell in scan order that holds the maximum: max - v is 0 there and positive elsewhere, so each cell
        // offers its offset in the input's flat spatial layout, or that plus a span past every offset; the least wins.
        long past = kernel2d[0] * width;
        Tensor? first = null;
        int k = 0;
        foreach (var (i, j) in Offsets(kernel2d))
        {
            var offered = (max - cells[k++]).sign_().mul_(S(past)).add_(S(i * width + j), S(1));
            first = first is null ? offered : minimum(first, offered);
        }
        var (rows, cols) = (max.size(2), max.size(3));
        var windowStart = arange(L(0), L(rows), L(1), ScalarType.Int64, x.device).mul_(L(kernel2d[0] * width)).unsqueeze(1)
            .add(arange(L(0), L(cols), L(1), ScalarType.Int64, x.device).mul_(L(kernel2d[1])), L(1));
        var index = first!.to_type(ScalarType.Int64).add_(windowStart, L(1));
        return oneD ? (max.squeeze(2), index.squeeze(2)) : (max, index);
    }

    /// <summary>The mean of each window of x, [N, C, ..pooled]: the cells summed in scan order, then divided.</summary>
    public static Tensor Mean(Tensor x, long[] kernel2d)
    {
        var (cells, oneD) = Cells(x, kernel2d);
        var mean = Reduce(cells, (sum, cell) => sum.add_(cell, S(1))).div_(S(cells.size(0)));
        return oneD ? mean.squeeze(2) : mean;
    }

    /// <summary>The transpose of <see cref="Mean"/>: each window's cotangent over its cells, divided by their number; zero past the last window.</summary>
    public static Tensor MeanTranspose(Tensor cotangent, long[] kernel2d, long[] spatial)
    {
        var (c4, oneD) = As2d(cotangent);
        var s = c4.Dims();
        long rows = s[2], cols = s[3];
        // Columns first, then rows: the copy whose innermost axis repeats (stride 0), which libtorch does not vectorise,
        // makes only a kh-th of the cells, and the second repeats whole rows; 1.7-1.8 against 2.6-3.0 ms for one copy
        // repeating both axes, at [256, 8, 14, 14] (throw-away --pool-probe rows, the same values).
        var spread = c4.div(S(kernel2d[0] * kernel2d[1])).unsqueeze(4).expand(s[0], s[1], rows, cols, kernel2d[1])
            .reshape(s[0], s[1], rows, cols * kernel2d[1])
            .unsqueeze(3).expand(s[0], s[1], rows, kernel2d[0], cols * kernel2d[1])
            .reshape(s[0], s[1], rows * kernel2d[0], cols * kernel2d[1]);
        long height = oneD ? 1 : spatial[0], width = spatial[^1];
        if (rows * kernel2d[0] < height || cols * kernel2d[1] < width)
            spread = F.pad(spread, [0, width - cols * kernel2d[1], 0, height - rows * kernel2d[0]]);
        return oneD ? spread.squeeze(2) : spread;
    }

    private static (Tensor X, bool OneD) As2d(Tensor x) => x.dim() == 3 ? (x.unsqueeze(2), true) : (x, false);

    /// <summary>
    /// [kh·kw, N, C, rows, cols]: cell (i, j) of every window, in scan order, each a contiguous block. One copy; the
    /// passes over contiguous blocks are vectorised, over strided views of x they were not (3-5× slower here).
    /// </summary>
    private static (Tensor Cells, bool OneD) Cells(Tensor x, long[] kernel2d)
    {
        var (x4, oneD) = As2d(x);
        var s = x4.Dims();
        long rows = s[2] / kernel2d[0], cols = s[3] / kernel2d[1];
        var whole = x4.narrow(2, 0, rows * kernel2d[0]).narrow(3, 0, cols * kernel2d[1]);
        var cells = whole.reshape(s[0], s[1], rows, kernel2d[0], cols, kernel2d[1]).permute(3, 5, 0, 1, 2, 4)
            .contiguous().view(kernel2d[0] * kernel2d[1], s[0], s[1], rows, cols);
        return (cells, oneD);
    }

    private static Tensor Reduce(Tensor cells, Func<Tensor, Tensor, Tensor> step)
    {
        var result = cells[0].clone();
        for (long k = 1; k < cells.size(0); k++) result = step(result, cells[k]);
        return result;
    }

    /// <summary>The cells of a window in libtorch's scan order: row by row.</summary>
    private static IEnumerable<(long I, long J)> Offsets(long[] kernel2d)
    {
        for (long i = 0; i < kernel2d[0]; i++)
            for (long j = 0; j < kernel2d[1]; j++)
                yield return (i, j);
    }
}
