namespace JacService.Core;

/// <summary>The request does not fit the model (shape, dtype, names, values). Maps to INVALID_ARGUMENT.</summary>
public sealed class InvalidRequestException(string message) : Exception(message);

/// <summary>The result would exceed a configured size limit. Maps to RESOURCE_EXHAUSTED.</summary>
public sealed class ResultTooLargeException(string message) : Exception(message);

/// <summary>A model file that cannot be served: unreadable, invalid graph, unsupported op.</summary>
public sealed class ModelLoadException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>An op failed while evaluating a node; names the node so the model author can find it.</summary>
public sealed class NodeEvaluationException(string nodeName, string opType, string message, Exception? inner = null)
    : Exception($"node '{nodeName}' ({opType}): {message}", inner)
{
    public string NodeName { get; } = nodeName;
    public string OpType { get; } = opType;
}
