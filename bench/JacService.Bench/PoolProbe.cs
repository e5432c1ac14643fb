using System.Diagnostics;
using JacService.Core.Ops;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace JacService.Bench;

/// <summary>
/// small_cnn's first pool ([256, 8, 28, 28], 2×2 windows) by libtorch's pooling kernels and by TiledPool, one thread,
/// and what the elementwise kernels TiledPool could be built from cost on its output's size (docs/benchmarks.md,
/// "Tiled pooling").
/// </summary>
public static class PoolProbe
{
    public static void Run()
    {
        torch.set_num_threads(1);
        using var inference = inference_mode();
        var x = randn(256, 8, 28, 28);
        var cotangent = randn(256, 8, 14, 14);
        long[] kernel = [2, 2];
        Console.WriteLine("| [256, 8, 28, 28], 2x2 windows | µs per call, median of 50 |");
        Console.WriteLine("|---|---:|");
        Time("libtorch max_pool2d_with_indices", () => F.max_pool2d_with_indices(x, kernel, kernel).output);
        Time("libtorch max_pool2d", () => F.max_pool2d(x, kernel, kernel));
        Time("TiledPool.MaxWithIndices", () => TiledPool.MaxWithIndices(x, kernel)!.Value.Indices);
        Time("TiledPool.Max", () => TiledPool.Max(x, kernel));
        Time("libtorch avg_pool2d", () => F.avg_pool2d(x, kernel, kernel));
        Time("TiledPool.Mean", () => TiledPool.Mean(x, kernel));
        Time("libtorch avg_pool2d_backward", () => F.avg_pool2d_backward(cotangent, x, kernel, kernel));
        Time("TiledPool.MeanTranspose", () => TiledPool.MeanTranspose(cotangent, kernel, [28, 28]));
        var a = randn(256, 8, 14, 14);
        var b = randn(256, 8, 14, 14);
        var mask = a.gt(b);
        Time("[256, 8, 14, 14]: maximum", () => maximum(a, b));
        Time("[256, 8, 14, 14]: sign", () => a.sign());
        Time("[256, 8, 14, 14]: gt", () => a.gt(b));
        Time("[256, 8, 14, 14]: isnan", () => a.isnan());
        Time("[256, 8, 14, 14]: where", () => where(mask, a, b));
        Time("[256, 8, 14, 14]: maximum of strided views of x", () => maximum(x.slice(2, 0, 28, 2).slice(3, 0, 28, 2), x.slice(2, 1, 28, 2).slice(3, 1, 28, 2)));
    }

    /// <summary>Prints a table row: the median of 50 timed calls, after 5 untimed ones.</summary>
    internal static void Time(string label, Func<Tensor> call)
    {
        for (int i = 0; i < 5; i++)
            using (NewDisposeScope()) call();
        var times = new List<double>();
        for (int i = 0; i < 50; i++)
        {
            using var scope = NewDisposeScope();
            long start = Stopwatch.GetTimestamp();
            call();
            times.Add(Stopwatch.GetElapsedTime(start).TotalMicroseconds);
        }
        times.Sort();
        Console.WriteLine($"| {label} | {times[25]:F0} |");
    }
}
