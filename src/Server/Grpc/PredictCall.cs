using JacService.Core.Models;
using JacService.Server.Admission;
using JacService.Server.Batching;
using JacService.Server.Models;

namespace JacService.Server.Grpc;

/// <summary>Predict's queueing, shared by JacobianService and the Open Inference Protocol's ModelInfer so both size and hold outputs alike.</summary>
internal static class PredictCall
{
    /// <summary>
    /// Refuses oversized outputs before any work, holds their size in the call's memory (refused if it would pass
    /// Limits:MaxInFlightMiB), then computes the validated <paramref name="inputs"/> through the batcher.
    /// </summary>
    public static Task<EngineResult> SubmitAsync(ModelEntry entry, HostTensor[] inputs, DateTimeOffset? deadline, CancellationToken cancellation,
        CallMemory? memory)
    {
        long outputBytes = entry.Model!.CheckOutputSize(inputs);
        memory?.Hold(outputBytes, "outputs");
        return entry.Batcher!.SubmitAsync(WorkKey.For(WorkKind.Predict, inputs), inputs, deadline, cancellation);
    }
}
