namespace JacService.Core;

/// <summary>An op failed while evaluating a node; names the node so the model author can find it.</summary>
public sealed class NodeEvaluationException(string nodeName, string opType, string message, Exception? inner = null)
    : Exception($"node '{nodeName}' ({opType}): {message}", inner)
{
    public string NodeName { get; } = nodeName;
    public string OpType { get; } = opType;
}
