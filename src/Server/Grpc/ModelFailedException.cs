namespace JacService.Server.Grpc;

/// <summary>The version exists but failed to load. Maps to FAILED_PRECONDITION.</summary>
public sealed class ModelFailedException(string message) : Exception(message);
