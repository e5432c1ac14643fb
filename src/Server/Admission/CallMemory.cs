using Grpc.Core;
using JacService.Server.Grpc;

namespace JacService.Server.Admission;

/// <summary>
/// What one call holds of the <see cref="CallMemoryBudget"/>: its request message, taken by CallMemoryMiddleware (or by
/// JacobianStreams for a stream's message), and its result, taken by the handler once validation has sized it and
/// before anything is queued. Disposed when the call has answered (its response written).
/// </summary>
public sealed class CallMemory(CallMemoryBudget budget) : IDisposable
{
    private long _held;

    public bool TryHold(long bytes)
    {
        if (!budget.TryTake(bytes, _held)) return false;
        _held += bytes;
        return true;
    }

    /// <summary>Holds <paramref name="bytes"/> of <paramref name="what"/> ("result", say) or refuses the call (RESOURCE_EXHAUSTED).</summary>
    public void Hold(long bytes, string what)
    {
        if (!TryHold(bytes)) throw new CallMemoryExceededException(budget.Refusal(bytes, what));
    }

    public void Dispose()
    {
        budget.Release(_held);
        _held = 0;
    }

    /// <summary>The hold CallMemoryMiddleware opened for this call, or null where there is none (a call not served over HTTP).</summary>
    public static CallMemory? Of(ServerCallContext context) => CallHttpContext.Of(context)?.Features.Get<CallMemory>();
}
