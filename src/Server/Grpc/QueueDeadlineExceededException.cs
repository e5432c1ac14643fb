namespace JacService.Server.Grpc;

/// <summary>The deadline of a request passed while it waited. Maps to DEADLINE_EXCEEDED.</summary>
public sealed class QueueDeadlineExceededException(string message) : Exception(message);
