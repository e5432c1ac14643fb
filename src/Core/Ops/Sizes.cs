namespace JacService.Core.Ops;

/// <summary>
/// Element and byte counts of what a hostile model declares: dims and pads come from the file, so products and sums
/// saturate at <see cref="long.MaxValue"/> instead of overflowing into a small (or negative) number that would pass a limit.
/// </summary>
internal static class Sizes
{
    /// <summary>Elements of a shape; a negative extent counts as empty (the op refuses it when it runs).</summary>
    public static long Elements(IEnumerable<long> dims)
    {
        long product = 1;
        foreach (var d in dims)
        {
            if (d <= 0) return 0;
            product = Times(product, d);
        }
        return product;
    }

    public static long Times(long a, long b) => a <= 0 || b <= 0 ? 0 : a > long.MaxValue / b ? long.MaxValue : a * b;

    public static long Plus(long a, long b) => a > long.MaxValue - b ? long.MaxValue : a + b;

    public static long Sum(IEnumerable<long> counts) => counts.Aggregate(0L, Plus);
}
