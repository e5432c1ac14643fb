namespace JacService.Fuzz;

/// <summary>
/// What a harness throws when the product answered, but wrongly: an INTERNAL status (the unexpected exception that
/// caused it is the inner one), or a result whose shapes contradict the request. Never caught by a harness.
/// </summary>
public sealed class HarnessFindingException(string message, Exception? inner = null) : Exception(message, inner);
