using JacService.Core.Models;
using JacService.Server.Batching;

namespace JacService.Server.Tests;

public sealed class BatchBuffersTests
{
    private static readonly HostTensor[] Sample = [new HostTensor([1, 32], new float[32])];
    private static readonly WorkKey Key = WorkKey.For(WorkKind.Jacobian, Sample, 0, [0]);

    [Fact]
    public void OneShapeGetsTheSameBuffersEveryTime()
    {
        var cache = new BatchBufferCache();
        var first = cache.For(Key, 8, Sample);
        Assert.Same(first, cache.For(Key, 8, Sample));
        Assert.NotSame(first, cache.For(Key, 16, Sample));
        Assert.Equal(8 * 32, first.Inputs[0].Length);
        Assert.Same(first.Results.For("jac:y", 100), first.Results.For("jac:y", 100));
    }

    [Fact]
    public void PastItsCapacityTheLeastRecentlyUsedShapeIsDropped()
    {
        var cache = new BatchBufferCache(capacity: 2);
        var one = cache.For(Key, 1, Sample);
        var two = cache.For(Key, 2, Sample);
        Assert.Same(one, cache.For(Key, 1, Sample));
        cache.For(Key, 4, Sample);
        Assert.Same(one, cache.For(Key, 1, Sample));
        Assert.NotSame(two, cache.For(Key, 2, Sample));
    }
}
