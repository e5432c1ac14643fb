namespace JacService.Server.Grpc;

/// <summary>The version exists but is still loading. Maps to UNAVAILABLE.</summary>
public sealed class ModelUnavailableException(string message) : Exception(message);
