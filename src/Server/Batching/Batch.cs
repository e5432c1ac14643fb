namespace JacService.Server.Batching;

/// <summary>Parts of requests with one key that run together (the executor sizes and pads it when it runs).</summary>
public sealed record Batch(WorkKey Key, IReadOnlyList<RequestPart> Parts);
