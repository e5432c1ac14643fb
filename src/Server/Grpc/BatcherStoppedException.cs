namespace JacService.Server.Grpc;

/// <summary>The batcher is shutting down and takes no new requests. Maps to UNAVAILABLE.</summary>
public sealed class BatcherStoppedException(string message) : Exception(message);
