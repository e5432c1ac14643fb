namespace JacService.Server.Grpc;

/// <summary>A JacobianStream message that would pass Limits:MaxRequestMiBInFlight. Maps to RESOURCE_EXHAUSTED.</summary>
public sealed class RequestMemoryExceededException(string message) : Exception(message);
