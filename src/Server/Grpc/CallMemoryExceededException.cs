namespace JacService.Server.Grpc;

/// <summary>A call's result, or a JacobianStream message, that would take the bytes held past Limits:MaxInFlightMiB. Maps to RESOURCE_EXHAUSTED.</summary>
public sealed class CallMemoryExceededException(string message) : Exception(message);
