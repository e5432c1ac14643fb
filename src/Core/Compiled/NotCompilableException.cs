namespace JacService.Core.Compiled;

/// <summary>
/// A derivative graph cannot be written for this model, wrt and of (an op without a compiled rule, a shape not known
/// ahead of a request, an input the rule does not differentiate); the engine's interpreter serves it instead.
/// </summary>
public sealed class NotCompilableException(string message) : Exception(message);
