using JacService.Core.Models;

namespace JacService.Server.Tests;

internal static class HostTensorAssert
{
    /// <summary>The same shape, and every entry within <paramref name="relative"/> of the largest |expected| entry.</summary>
    public static void Close(HostTensor expected, HostTensor actual, float relative, string what = "entry")
    {
        Assert.Equal(expected.Shape, actual.Shape);
        float scale = expected.Data.Max(MathF.Abs);
        for (int i = 0; i < expected.Data.Length; i++)
            Assert.True(MathF.Abs(expected.Data[i] - actual.Data[i]) <= relative * scale, $"{what}[{i}]: {expected.Data[i]} vs {actual.Data[i]}");
    }
}
