using System.Collections.Concurrent;

namespace JacService.Core.Planning;

/// <summary>
/// Values computed once per key by whichever batch needs one first while other batches wait for it: plans, and the
/// choices timed on a batch (AUTO's mode, the Hessian's method, graph or interpreter). A computation that fails is
/// removed, so a later batch computes it again. One that was stopped because the computing batch was abandoned (all its
/// callers gone, <see cref="BatchCancellation"/>) is no failure of a waiting batch whose callers are still there: the
/// waiting batch computes it again itself. Before, it failed with the other batch's OperationCanceledException, and its
/// callers got INTERNAL: 90 of 46,000 calls from a client that cancelled each Jacobian 2 ms after starting it.
/// </summary>
internal static class SharedEntries
{
    public static TValue GetOrCompute<TKey, TValue>(ConcurrentDictionary<TKey, Lazy<TValue>> entries, TKey key, Func<TValue> compute)
        where TKey : notnull
    {
        while (true)
        {
            var lazy = entries.GetOrAdd(key, _ => new Lazy<TValue>(compute));
            try
            {
                return lazy.Value;
            }
            catch (Exception e)
            {
                // This failed entry only: another batch may have put a good one in its place meanwhile.
                entries.TryRemove(KeyValuePair.Create(key, lazy));
                if (!StoppedForAnotherBatch(e)) throw;
            }
        }
    }

    /// <summary>
    /// Whether <paramref name="e"/> is, or wraps (an evaluator reports a stop inside an op as the node's failure), a stop
    /// by a cancelled token other than this thread's batch's.
    /// </summary>
    private static bool StoppedForAnotherBatch(Exception e)
    {
        var own = BatchCancellation.Current;
        for (var inner = e; inner is not null; inner = inner.InnerException)
            if (inner is OperationCanceledException { CancellationToken: var token } && token.IsCancellationRequested && token != own)
                return true;
        return false;
    }
}
