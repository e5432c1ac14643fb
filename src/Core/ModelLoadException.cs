namespace JacService.Core;

/// <summary>A model file that cannot be served: unreadable, invalid graph, unsupported op.</summary>
public sealed class ModelLoadException(string message, Exception? inner = null) : Exception(message, inner);
