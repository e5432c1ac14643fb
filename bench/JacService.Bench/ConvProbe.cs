using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace JacService.Bench;

/// <summary>
/// The transpose of a convolution (its reverse rule) three ways, one thread: libtorch's convolution with the kernel
/// flipped (the rule's usual path at unit strides), its transposed convolution, and the per-tap products as one matrix
/// product summed back by col2im (fold). For small_cnn's two layers and a wider one (docs/benchmarks.md, "A
/// one-channel transpose"). Each pair's results are compared.
/// </summary>
public static class ConvProbe
{
    public static void Run()
    {
        torch.set_num_threads(1);
        using var inference = inference_mode();
        Console.WriteLine("| transpose of | µs per call, median of 50 |");
        Console.WriteLine("|---|---:|");
        foreach (var rows in new long[] { 256, 2560 })
        {
            var ct = randn(rows, 8, 28, 28);
            var w = randn(8, 1, 3, 3);
            var flipped = w.transpose(0, 1).flip(2, 3).contiguous();
            var taps = w.reshape(8, 9).t().contiguous();
            Tensor Convolution() => F.conv2d(ct, flipped, null, [1, 1], [1, 1]);
            Tensor Fold() => F.fold(matmul(taps, ct.reshape(rows, 8, 784)), (28, 28), (3, 3), padding: (1, 1));
            PoolProbe.Time($"1->8 channels, 3x3, [{rows}, 8, 28, 28]: flipped convolution", Convolution);
            if (rows == 256) PoolProbe.Time($"1->8 channels, 3x3, [{rows}, 8, 28, 28]: transposed convolution", () => F.conv_transpose2d(ct, w, null, [1, 1], [1, 1]));
            PoolProbe.Time($"1->8 channels, 3x3, [{rows}, 8, 28, 28]: matrix product + fold", Fold);
            Differ(Convolution(), Fold());
        }
        {
            // small_cnn's second layer: 8 -> 16 channels in 2 groups, 4 input channels per group.
            var ct = randn(256, 16, 14, 14);
            var w = randn(16, 4, 3, 3);
            var flipped = w.reshape(2, 8, 4, 3, 3).transpose(1, 2).reshape(8, 8, 3, 3).flip(2, 3).contiguous();
            var taps = w.reshape(2, 8, 36).transpose(1, 2).contiguous();
            Tensor Convolution() => F.conv2d(ct, flipped, null, [1, 1], [1, 1], groups: 2);
            Tensor Fold() => F.fold(matmul(taps, ct.reshape(256, 2, 8, 196)).reshape(256, 72, 196), (14, 14), (3, 3), padding: (1, 1));
            PoolProbe.Time("8->16 channels, 2 groups, [256, 16, 14, 14]: flipped convolution", Convolution);
            PoolProbe.Time("8->16 channels, 2 groups, [256, 16, 14, 14]: matrix product + fold", Fold);
            Differ(Convolution(), Fold());
        }
        {
            var ct = randn(256, 32, 14, 14);
            var w = randn(32, 16, 3, 3);
            var flipped = w.transpose(0, 1).flip(2, 3).contiguous();
            var taps = w.reshape(32, 144).t().contiguous();
            Tensor Convolution() => F.conv2d(ct, flipped, null, [1, 1], [1, 1]);
            Tensor Fold() => F.fold(matmul(taps, ct.reshape(256, 32, 196)), (14, 14), (3, 3), padding: (1, 1));
            PoolProbe.Time("16->32 channels, [256, 32, 14, 14]: flipped convolution", Convolution);
            PoolProbe.Time("16->32 channels, [256, 32, 14, 14]: matrix product + fold", Fold);
            Differ(Convolution(), Fold());
        }
    }

    private static void Differ(Tensor a, Tensor b) =>
        Console.WriteLine($"|   largest difference of the two | {(a - b).abs().max().item<float>():E1} |");
}
