using Grpc.Core;
using JacService.Core.Models;

namespace JacService.Server.Grpc;

/// <summary>
/// Hands a call's large arrays back to <see cref="FloatArrayPool"/>: the inputs copied out of the request, and the result
/// tensors the response sends without a copy (<see cref="FloatBytes"/>), once the response has been written. Only for a
/// call whose result has arrived, so no executor reads its inputs any more; a call that failed or was cancelled leaves
/// its arrays to the GC, because a batch it was part of may still be running.
/// </summary>
internal static class CallArrays
{
    public static void ReturnWhenWritten(ServerCallContext context, IEnumerable<HostTensor> inputs, EngineResult result)
    {
        var arrays = Large(inputs.Concat(result.Outputs.Values).Concat(result.Jacobians.Values).Concat(result.SecondOrder.Values));
        // Only a call Kestrel serves has a response to wait for; one made in-process leaves its arrays to the GC.
        if (arrays.Count == 0 || CallHttpContext.Of(context) is not { } http) return;
        http.Response.OnCompleted(() =>
        {
            FloatArrayPool.Shared.ReturnAll(arrays);
            return Task.CompletedTask;
        });
    }

    /// <summary>Returns the arrays of tensors nothing reads any more (a streamed chunk already written).</summary>
    public static void ReturnNow(IEnumerable<HostTensor> tensors) => FloatArrayPool.Shared.ReturnAll(Large(tensors));

    private static List<float[]> Large(IEnumerable<HostTensor> tensors) =>
        tensors.Select(t => t.Data).Where(a => a.Length >= FloatArrayPool.MinimumLength).ToList();
}
