namespace JacService.Core;

/// <summary>The result would exceed a configured size limit. Maps to RESOURCE_EXHAUSTED.</summary>
public sealed class ResultTooLargeException(string message) : Exception(message);
