namespace JacService.Core;

/// <summary>The request does not fit the model (shape, dtype, names, values). Maps to INVALID_ARGUMENT.</summary>
public sealed class InvalidRequestException(string message) : Exception(message);
