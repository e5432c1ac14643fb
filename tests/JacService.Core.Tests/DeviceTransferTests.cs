using JacService.Core.Models;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>
/// Results leaving the device in one transfer (what a GPU batch does: flattened, laid end to end, copied once and cut)
/// give exactly what copying each result on its own gives. Run here on CPU tensors, which take the same code.
/// </summary>
public class DeviceTransferTests
{
    [Fact]
    public void OneTransferForAllResultsEqualsOneTransferPerResult()
    {
        using var scope = NewDisposeScope();
        Tensor[] results =
        [
            arange(6, ScalarType.Float32).reshape(2, 3),
            arange(12, ScalarType.Float32).reshape(3, 4).t(),      // a view that is not contiguous
            linspace(-1, 1, 5, ScalarType.Float64),                 // converted to float32 on the way
            zeros(0, 5),                                            // no values
            randn(2, 1, 3, 3),
        ];
        string[] names = ["a", "b", "c", "d", "e"];
        foreach (var into in new ResultBuffers?[] { null, new ResultBuffers() })
        {
            var each = DeviceTransfer.ToHost(results, names, into is null ? null : new ResultBuffers(), oneTransfer: false);
            var once = DeviceTransfer.ToHost(results, names, into, oneTransfer: true);
            Assert.Equal(results.Length, once.Length);
            for (int i = 0; i < results.Length; i++)
            {
                Assert.Equal(each[i].Shape, once[i].Shape);
                Assert.Equal(each[i].Data, once[i].Data);
            }
            Assert.Equal([0f, 4f, 8f, 1f, 5f, 9f], once[1].Data[..6]);
        }
    }

    [Fact]
    public void ReusedBuffersAreWrittenInPlace()
    {
        using var scope = NewDisposeScope();
        var buffers = new ResultBuffers();
        var first = DeviceTransfer.ToHost([ones(2, 2), zeros(3)], ["x", "y"], buffers, oneTransfer: true);
        var second = DeviceTransfer.ToHost([full(2, 2, 7f), full(3, 2f)], ["x", "y"], buffers, oneTransfer: true);
        Assert.Same(first[0].Data, second[0].Data);
        Assert.Equal([7f, 7f, 7f, 7f], second[0].Data);
        Assert.Equal([2f, 2f, 2f], second[1].Data);
    }
}
