namespace JacService.Server.Batching;

/// <summary>What a queued request asks for: requests of different kinds never share a pass.</summary>
public enum WorkKind
{
    Predict,
    Jacobian,
}
