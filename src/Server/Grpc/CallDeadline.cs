using Grpc.Core;

namespace JacService.Server.Grpc;

/// <summary>A call's deadline as the batcher takes it: null when the caller set none.</summary>
internal static class CallDeadline
{
    public static DateTimeOffset? Of(ServerCallContext context) =>
        context.Deadline == DateTime.MaxValue ? null : new DateTimeOffset(context.Deadline.ToUniversalTime());
}
