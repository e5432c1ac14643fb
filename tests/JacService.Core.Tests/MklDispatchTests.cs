using JacService.Core.Models;
using Xunit;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

public sealed class MklDispatchTests
{
    [Fact]
    public void TheVendorCheckIsAnsweredOnANonIntelCpu()
    {
        var expected = MklDispatch.CpuVendor() switch
        {
            null => MklDispatchOutcome.NotX86,
            "GenuineIntel" => MklDispatchOutcome.IntelAlready,
            _ => MklDispatchOutcome.Applied,
        };
        // Applied again (the module initializer did it first): a libtorch whose MKL changed shape answers UnknownMklBuild.
        Assert.Equal(expected, MklDispatch.IgnoreCpuVendor());
    }

    [Theory]
    [InlineData(1024, 1024, 1024)]
    [InlineData(2560, 512, 10)]
    [InlineData(7, 300, 33)]
    public void MatrixProductsOnTheChosenKernelsMatchFloat64(int m, int k, int n)
    {
        using var scope = NewDisposeScope();
        var generator = new TorchSharp.torch.Generator(1234);
        var a = randn([m, k], generator: generator);
        var b = randn([k, n], generator: generator);
        var product = a.mm(b).to_type(ScalarType.Float64);
        var reference = a.to_type(ScalarType.Float64).mm(b.to_type(ScalarType.Float64));
        // float32 accumulation over k terms of unit-variance products: error ~ sqrt(k) * 2^-24 * |terms|.
        double worst = (product - reference).abs().max().item<double>();
        Assert.True(worst < 1e-4 * Math.Sqrt(k), $"largest difference {worst} for [{m}x{k}]x[{k}x{n}]");
    }
}
