using JacService.Core.Ops;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace JacService.Core.Tests;

/// <summary>
/// TiledPool against libtorch's own pooling kernels, which it stands in for, on the inputs the op rows avoid (their
/// values are distinct, for finite differences): ties and signed zeros, where the argmax libtorch picks decides which
/// input a tangent or cotangent goes to, and NaNs and infinities, which it leaves to libtorch.
/// </summary>
public class TiledPoolTests
{
    public static TheoryData<long[], long[]> Cases => new()
    {
        { new long[] { 3, 4, 8, 6 }, new long[] { 2, 2 } },
        { new long[] { 2, 3, 7, 5 }, new long[] { 3, 2 } },
        { new long[] { 2, 2, 6, 6 }, new long[] { 1, 3 } },
        { new long[] { 2, 3, 11 }, new long[] { 2 } },
        { new long[] { 1, 1, 9 }, new long[] { 3 } },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Max_and_argmax_equal_libtorchs_with_ties_and_signed_zeros(long[] shape, long[] kernel)
    {
        using var scope = NewDisposeScope();
        // Few distinct values, so most windows hold ties, and -0 beside +0 here and there.
        var x = randint(0, 3, shape, ScalarType.Float32, generator: new Generator(7));
        var flat = x.view(-1);
        for (long i = 1; i < flat.size(0); i += 5) flat[i] = -0.0f;
        x[0, 0, TensorIndex.Ellipsis] = 0.0f;

        var tiled = Tiled(shape, kernel);
        var (values, indices) = TiledPool.MaxWithIndices(x, tiled)!.Value;
        var (expected, expectedIndices) = kernel.Length == 1
            ? F.max_pool1d_with_indices(x, kernel[0], kernel[0])
            : F.max_pool2d_with_indices(x, kernel, kernel);

        Assert.Equal(expected.shape, values.shape);
        Assert.Equal(expectedIndices.data<long>().ToArray(), indices.contiguous().data<long>().ToArray());
        // Equal as numbers: a window of -0 and +0 may answer either zero.
        Assert.Equal(expected.data<float>().ToArray(), values.contiguous().data<float>().ToArray());
        Assert.Equal(expected.data<float>().ToArray(), TiledPool.Max(x, tiled).contiguous().data<float>().ToArray());
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    public void A_maximum_that_is_not_finite_leaves_the_indices_to_libtorch_while_the_values_stay_equal(float special)
    {
        using var scope = NewDisposeScope();
        long[] shape = [2, 3, 6, 4], kernel = [2, 2];
        var x = randn(shape, generator: new Generator(3));
        // A whole window of it for -inf (else a finite cell is the maximum).
        x[1, 2, TensorIndex.Slice(0, 2), TensorIndex.Slice(2, 4)] = special;
        var tiled = Tiled(shape, kernel);

        Assert.Null(TiledPool.MaxWithIndices(x, tiled));
        var expected = F.max_pool2d(x, kernel, kernel);
        Assert.Equal(expected.data<float>().ToArray(), TiledPool.Max(x, tiled).contiguous().data<float>().ToArray());
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Mean_and_its_transpose_equal_libtorchs(long[] shape, long[] kernel)
    {
        using var scope = NewDisposeScope();
        var x = randn(shape, generator: new Generator(11));
        var tiled = Tiled(shape, kernel);
        bool oneD = kernel.Length == 1;
        var expected = oneD ? F.avg_pool1d(x, kernel[0], kernel[0]) : F.avg_pool2d(x, kernel, kernel);
        var mean = TiledPool.Mean(x, tiled);
        Assert.Equal(expected.shape, mean.shape);
        Assert.True(allclose(expected, mean, rtol: 1e-6, atol: 1e-7), $"max abs difference {(expected - mean).abs().max().item<float>()}");

        var cotangent = randn(expected.shape, generator: new Generator(13));
        var expectedBack = oneD
            ? F.avg_pool2d_backward(cotangent.unsqueeze(2), x.unsqueeze(2), [1, kernel[0]], [1, kernel[0]]).squeeze(2)
            : F.avg_pool2d_backward(cotangent, x, kernel, kernel);
        var back = TiledPool.MeanTranspose(cotangent, tiled, shape[2..]);
        Assert.Equal(expectedBack.shape, back.shape);
        Assert.True(allclose(expectedBack, back, rtol: 1e-6, atol: 1e-7), $"max abs difference {(expectedBack - back).abs().max().item<float>()}");
    }

    [Theory]
    [InlineData(ScalarType.Float16)]
    [InlineData(ScalarType.BFloat16)]
    public void Half_precision_argmaxes_are_left_to_libtorch_as_their_offsets_would_round(ScalarType type)
    {
        using var scope = NewDisposeScope();
        long[] shape = [1, 2, 4, 4096], kernel = [2, 2];
        var x = randn(shape, generator: new Generator(5)).to_type(type);
        var tiled = Tiled(shape, kernel);
        Assert.Null(TiledPool.MaxWithIndices(x, tiled));
        Assert.Equal(F.max_pool2d(x, kernel, kernel).to_type(ScalarType.Float32).data<float>().ToArray(),
            TiledPool.Max(x, tiled).to_type(ScalarType.Float32).contiguous().data<float>().ToArray());
    }

    [Fact]
    public void Pools_whose_windows_do_not_tile_are_left_to_libtorch()
    {
        var cpu = CPU;
        long[] spatial = [6, 6], pooled = [3, 3], kernel = [2, 2], zero = [0, 0];
        Assert.NotNull(TiledPool.Kernel2d(cpu, kernel, kernel, [1, 1], zero, zero, spatial, pooled));
        Assert.Null(TiledPool.Kernel2d(cpu, kernel, [1, 1], [1, 1], zero, zero, spatial, [5, 5]));       // overlapping windows
        Assert.Null(TiledPool.Kernel2d(cpu, kernel, kernel, [2, 1], zero, zero, spatial, [2, 3]));       // dilation
        Assert.Null(TiledPool.Kernel2d(cpu, kernel, kernel, [1, 1], [1, 0], [1, 0], spatial, [4, 3]));   // padding
        Assert.Null(TiledPool.Kernel2d(cpu, kernel, kernel, [1, 1], zero, zero, [7, 6], [4, 3]));        // ceil mode's partial window
        Assert.Null(TiledPool.Kernel2d(new Device("cuda:0"), kernel, kernel, [1, 1], zero, zero, spatial, pooled)); // libtorch's CUDA kernels
        Assert.Equal(new long[] { 1, 3 }, TiledPool.Kernel2d(cpu, [3], [3], [1], [0], [0], [10], [3]));
    }

    private static long[] Tiled(long[] shape, long[] kernel) => TiledPool.Kernel2d(CPU, kernel, kernel, kernel.Select(_ => 1L).ToArray(),
        new long[kernel.Length], new long[kernel.Length], shape[2..], shape[2..].Select((d, i) => d / kernel[i]).ToArray())!;
}
