namespace JacService.Core;

/// <summary>
/// An op failed while evaluating a node; names the node so the model author can find it. libtorch's C++ stack is cut
/// from the message (the callers see it), and stays on the inner exception for the log.
/// </summary>
public sealed class NodeEvaluationException(string nodeName, string opType, string message, Exception? inner = null)
    : Exception($"node '{nodeName}' ({opType}): {NativeErrors.Trim(message)}", inner)
{
    public string NodeName { get; } = nodeName;
    public string OpType { get; } = opType;
}
