using JacService.Core.Models;

namespace JacService.Core.Tests;

public class FloatArrayPoolTests
{
    private const int Large = FloatArrayPool.MinimumLength;

    [Fact]
    public void ARentedArrayHasExactlyTheLengthAsked()
    {
        var pool = new FloatArrayPool(capacityBytes: 64L << 20, maxLengths: 8);
        Assert.Equal(Large + 3, pool.Rent(Large + 3).Length);
        pool.Return(new float[Large + 5]);
        Assert.Equal(Large + 3, pool.Rent(Large + 3).Length);
        Assert.Equal(7, pool.Rent(7).Length);
    }

    [Fact]
    public void AReturnedArrayIsRentedAgainOnceOnly()
    {
        var pool = new FloatArrayPool(capacityBytes: 64L << 20, maxLengths: 8);
        var array = pool.Rent(Large);
        pool.Return(array);
        Assert.Equal(Large * 4L, pool.HeldBytes);
        Assert.Same(array, pool.Rent(Large));
        Assert.NotSame(array, pool.Rent(Large));
        Assert.Equal(0, pool.HeldBytes);
    }

    [Fact]
    public void ArraysBelowTheLargeObjectThresholdAreNotKept()
    {
        var pool = new FloatArrayPool(capacityBytes: 64L << 20, maxLengths: 8);
        var small = new float[Large - 1];
        pool.Return(small);
        Assert.Equal(0, pool.HeldBytes);
        Assert.NotSame(small, pool.Rent(Large - 1));
    }

    [Fact]
    public void ReturnAllKeepsAnArrayGivenTwiceOnce()
    {
        var pool = new FloatArrayPool(capacityBytes: 64L << 20, maxLengths: 8);
        var shared = new float[Large];
        pool.ReturnAll([shared, shared, new float[Large]]);
        Assert.Equal(2 * Large * 4L, pool.HeldBytes);
        var first = pool.Rent(Large);
        var second = pool.Rent(Large);
        Assert.NotSame(first, second);
    }

    [Fact]
    public void ThePoolHoldsNoMoreThanItsCapacity()
    {
        var pool = new FloatArrayPool(capacityBytes: 3L * Large * 4, maxLengths: 8);
        for (int i = 0; i < 5; i++) pool.Return(new float[Large]);
        Assert.Equal(3L * Large * 4, pool.HeldBytes);
    }

    [Fact]
    public void ThePoolKeepsArraysOfAtMostItsNumberOfLengths()
    {
        var pool = new FloatArrayPool(capacityBytes: 64L << 20, maxLengths: 2);
        pool.Return(new float[Large]);
        pool.Return(new float[Large + 1]);
        pool.Return(new float[Large + 2]);
        Assert.Equal((2L * Large + 1) * 4, pool.HeldBytes);
    }

    [Fact]
    public void ConcurrentRentersNeverGetTheSameArray()
    {
        var pool = new FloatArrayPool(capacityBytes: 64L << 20, maxLengths: 8);
        for (int i = 0; i < 16; i++) pool.Return(new float[Large]);
        var rented = new System.Collections.Concurrent.ConcurrentBag<float[]>();
        Parallel.For(0, 64, _ => rented.Add(pool.Rent(Large)));
        Assert.Equal(64, rented.Distinct(ReferenceEqualityComparer.Instance).Count());
    }
}
