using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>libtorch's C++ stack stays out of what callers read (the status of a request a node cannot evaluate).</summary>
public class NativeErrorsTests
{
    [Fact]
    public void ANodeFailureCarriesLibTorchsMessageWithoutItsStack()
    {
        using var x = zeros(2, 3);
        var native = Assert.ThrowsAny<ExternalException>(() => x.reshape(7));
        // The premise: libtorch appends where it was raised and every frame, with its libraries' paths.
        Assert.Contains("Exception raised from", native.Message);
        Assert.Contains("frame #0", native.Message);

        var e = new NodeEvaluationException("/Reshape", "Reshape", native.Message, native);
        Assert.Equal("node '/Reshape' (Reshape): shape '[7]' is invalid for input of size 6", e.Message);
        Assert.Same(native, e.InnerException);
    }

    [Fact]
    public void AMessageWithoutAStackIsLeftAsItIs() =>
        Assert.Equal("node 'n' (Slice): starts must be integers", new NodeEvaluationException("n", "Slice", "starts must be integers").Message);
}
