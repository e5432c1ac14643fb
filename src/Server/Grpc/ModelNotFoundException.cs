namespace JacService.Server.Grpc;

/// <summary>The request named a model or version the repository does not have. Maps to NOT_FOUND.</summary>
public sealed class ModelNotFoundException(string message) : Exception(message);
