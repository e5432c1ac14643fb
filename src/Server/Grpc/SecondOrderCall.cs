using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Server.Admission;
using JacService.Server.Batching;
using JacService.Server.Models;

namespace JacService.Server.Grpc;

/// <summary>
/// A BatchHessian or BatchLaplacian request resolved and validated, ready to queue. Everything that can refuse it runs
/// here, before the queue, so a bad or oversized request costs no executor time: the inputs, wrt and of, the axes, an
/// op without a second-order rule, then the size of the result (a Hessian grows with the square of wrt's size).
/// </summary>
internal sealed record SecondOrderCall(ModelLease Lease, ModelVersion Model, HostTensor[] Inputs, WorkKey Key, long ResultBytes) : IDisposable
{
    public static SecondOrderCall Prepare(ModelRegistry registry, string name, string version, IReadOnlyDictionary<string, HostTensor> inputs,
        string wrt, IReadOnlyCollection<string> of, SecondOrderKind kind, bool includeJacobian, IReadOnlyCollection<long>? axes = null)
    {
        var lease = registry.Acquire(name, version);
        try
        {
            var model = lease.Entry.Model!;
            var host = model.ValidateInputs(inputs, batched: true);
            int wrtIndex = model.ResolveWrt(wrt);
            var ofIndices = model.ResolveOf(of);
            int[] resolvedAxes = kind == SecondOrderKind.Laplacian ? model.Requests.ResolveAxes(axes ?? [], host, wrtIndex) : [];
            model.CheckSecondOrder(wrtIndex, ofIndices);
            long resultBytes = model.CheckSecondOrderSize(host, wrtIndex, ofIndices, kind, includeJacobian);
            var work = kind == SecondOrderKind.Hessian ? WorkKind.Hessian : WorkKind.Laplacian;
            var key = WorkKey.For(work, host, wrtIndex, ofIndices, DerivativeMode.Forward, includeJacobian, resolvedAxes);
            return new SecondOrderCall(lease, model, host, key, resultBytes);
        }
        catch
        {
            lease.Dispose();
            throw;
        }
    }

    /// <summary>Holds the result's size in the call's <paramref name="memory"/> (refused past Limits:MaxInFlightMiB), then queues.</summary>
    public Task<EngineResult> SubmitAsync(DateTimeOffset? deadline, CancellationToken cancellation, CallMemory? memory)
    {
        memory?.Hold(ResultBytes, "result");
        return Lease.Entry.Batcher!.SubmitAsync(Key, Inputs, deadline, cancellation);
    }

    public void Dispose() => Lease.Dispose();
}
