namespace JacService.Jac;

/// <summary>A failure the user can act on; its message is printed as is, without a stack trace.</summary>
public sealed class JacException(string message) : Exception(message);
