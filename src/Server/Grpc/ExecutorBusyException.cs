namespace JacService.Server.Grpc;

/// <summary>The executor queue is full. Maps to RESOURCE_EXHAUSTED.</summary>
public sealed class ExecutorBusyException(string message) : Exception(message);
