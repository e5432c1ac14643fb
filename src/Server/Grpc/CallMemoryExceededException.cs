namespace JacService.Server.Grpc;

/// <summary>A JacobianStream message that would pass Limits:MaxInFlightMiB. Maps to RESOURCE_EXHAUSTED.</summary>
public sealed class CallMemoryExceededException(string message) : Exception(message);
