namespace JacService.Server.Batching;

/// <summary>What a queued request asks for: requests of different kinds never share a pass.</summary>
public enum WorkKind
{
    Predict,
    Jacobian,
    /// <summary>The request's tensors are the model inputs followed by the tangents ([B] or [B, T] ++ in_shape).</summary>
    Jvp,
    /// <summary>The request's tensors are the model inputs followed by one cotangent per output in Of, in Of's order.</summary>
    Vjp,
}
