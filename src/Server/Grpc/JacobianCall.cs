using JacService.Core.Models;
using JacService.Server.Admission;
using JacService.Server.Batching;
using JacService.Server.Models;
using ProtoMode = JacService.Protos.V1.DerivativeMode;

namespace JacService.Server.Grpc;

/// <summary>
/// A Jacobian request resolved and validated, ready to queue; it holds its version until disposed. Shared by
/// JacobianService and the Open Inference Protocol's ModelInfer, so both validate and batch alike.
/// </summary>
internal sealed record JacobianCall(ModelLease Lease, ModelVersion Model, HostTensor[] Inputs, int Wrt, int[] Of, WorkKey Key) : IDisposable
{
    public ModelEntry Entry => Lease.Entry;

    public static JacobianCall Prepare(ModelRegistry registry, string name, string version, IReadOnlyDictionary<string, HostTensor> inputs,
        string wrt, IReadOnlyCollection<string> of, ProtoMode mode, bool batched)
    {
        var lease = registry.Acquire(name, version);
        try
        {
            var entry = lease.Entry;
            var model = entry.Model!;
            var engineMode = ModeMapping.FromProto(mode, entry.DefaultMode);
            var host = model.ValidateInputs(inputs, batched);
            int wrtIndex = model.ResolveWrt(wrt);
            var ofIndices = model.ResolveOf(of);
            return new JacobianCall(lease, model, host, wrtIndex, ofIndices, WorkKey.For(WorkKind.Jacobian, host, wrtIndex, ofIndices, engineMode));
        }
        catch
        {
            lease.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Refuses an oversized result before any work, holds its size in the call's <paramref name="memory"/> (refused if it
    /// would pass Limits:MaxInFlightMiB), then computes the whole request through the batcher.
    /// </summary>
    public Task<EngineResult> SubmitAsync(DateTimeOffset? deadline, CancellationToken cancellation, CallMemory? memory)
    {
        long resultBytes = Model.CheckResultSize(Inputs, Wrt, Of);
        memory?.Hold(resultBytes, "result");
        return Entry.Batcher!.SubmitAsync(Key, Inputs, deadline, cancellation);
    }

    public void Dispose() => Lease.Dispose();
}
