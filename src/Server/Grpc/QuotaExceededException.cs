namespace JacService.Server.Grpc;

/// <summary>A JacobianStream message over its caller's rate quota. Maps to RESOURCE_EXHAUSTED.</summary>
public sealed class QuotaExceededException(string message) : Exception(message);
