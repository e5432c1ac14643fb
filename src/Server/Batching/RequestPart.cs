namespace JacService.Server.Batching;

/// <summary>A slice of rows [RowStart, RowStart + Rows) of one request.</summary>
public sealed record RequestPart(PendingRequest Request, int Index, int RowStart, int Rows);
