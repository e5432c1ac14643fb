using JacService.Core.Models;
using JacService.Core.Ops;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>
/// Results copied by libtorch straight into their managed arrays (what a GPU batch does) give exactly what reading each
/// host tensor gives. Run here on CPU tensors, which take the same code.
/// </summary>
public class DeviceTransferTests
{
    [Fact]
    public void DirectCopiesEqualReadingEachHostTensor()
    {
        using var scope = NewDisposeScope();
        Tensor[] results =
        [
            arange(Scalars.L(0), Scalars.L(6), Scalars.L(1), ScalarType.Float32).reshape(2, 3),
            arange(Scalars.L(0), Scalars.L(12), Scalars.L(1), ScalarType.Float32).reshape(3, 4).t(),      // a view that is not contiguous
            linspace(-1, 1, 5, ScalarType.Float64),                 // converted to float32 on the way
            zeros(0, 5),                                            // no values
            randn(2, 1, 3, 3),
        ];
        string[] names = ["a", "b", "c", "d", "e"];
        foreach (var into in new ResultBuffers?[] { null, new ResultBuffers() })
        {
            var each = DeviceTransfer.ToHost(results, names, into is null ? null : new ResultBuffers(), direct: false);
            var direct = DeviceTransfer.ToHost(results, names, into, direct: true);
            Assert.Equal(results.Length, direct.Length);
            for (int i = 0; i < results.Length; i++)
            {
                Assert.Equal(each[i].Shape, direct[i].Shape);
                Assert.Equal(each[i].Data, direct[i].Data);
            }
            Assert.Equal([0f, 4f, 8f, 1f, 5f, 9f], direct[1].Data[..6]);
        }
    }

    [Fact]
    public void ReusedBuffersAreWrittenInPlace()
    {
        using var scope = NewDisposeScope();
        var buffers = new ResultBuffers();
        var first = DeviceTransfer.ToHost([ones(2, 2), zeros(3)], ["x", "y"], buffers, direct: true);
        var second = DeviceTransfer.ToHost([full(2, 2, Scalars.S(7)), full(3, Scalars.S(2))], ["x", "y"], buffers, direct: true);
        Assert.Same(first[0].Data, second[0].Data);
        Assert.Equal([7f, 7f, 7f, 7f], second[0].Data);
        Assert.Equal([2f, 2f, 2f], second[1].Data);
    }
}
