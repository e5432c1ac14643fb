using System.Diagnostics;
using JacService.Core.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace JacService.Bench;

/// <summary>
/// Float32 matrix products on one thread through TorchSharp's libtorch (MKL) beside Debian's PyTorch (OpenBLAS with
/// its SkylakeX kernels, as the functorch peer runs), same shapes, same run: the products the MLPs' passes are made of.
/// </summary>
public static class GemmBench
{
    private static readonly (long M, long K, long N)[] Shapes =
        [(1024, 1024, 1024), (2560, 512, 512), (256, 512, 512), (4096, 256, 256), (8192, 256, 32), (256, 128, 512)];

    public static void Run(string root, string mklNote)
    {
        torch.set_num_threads(1);
        var peer = global::Peer.Lines(root, "peer_gemm.py", Shapes.Select(s => $"{s.M},{s.K},{s.N}"), reuseLargeBlocks: true)
            .ToDictionary(e => e.GetProperty("shape").GetString()!, e => e.GetProperty("gflops").GetDouble());
        Console.WriteLine($"Float32 GEMM, one thread, GFLOP/s (best of 50). CPU vendor: {MklDispatch.CpuVendor()}; MKL vendor check: {mklNote}");
        Console.WriteLine();
        Console.WriteLine("| [M x K] x [K x N] | TorchSharp libtorch (MKL) | Debian PyTorch (OpenBLAS SkylakeX) | ratio |");
        Console.WriteLine("|---|---:|---:|---:|");
        foreach (var (m, k, n) in Shapes)
        {
            double ours = Gflops(m, k, n);
            double theirs = peer.GetValueOrDefault($"{m}x{k}x{n}", double.NaN);
            Console.WriteLine($"| {m} x {k} x {n} | {ours:F1} | {theirs:F1} | {ours / theirs:F2}x |");
        }
    }

    private static double Gflops(long m, long k, long n)
    {
        using var scope = NewDisposeScope();
        var a = randn(m, k);
        var b = randn(k, n);
        for (int i = 0; i < 3; i++) a.mm(b);
        double best = double.MaxValue;
        for (int i = 0; i < 50; i++)
        {
            using var inner = NewDisposeScope();
            long start = Stopwatch.GetTimestamp();
            a.mm(b);
            best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        return 2.0 * m * k * n / best / 1e9;
    }
}
