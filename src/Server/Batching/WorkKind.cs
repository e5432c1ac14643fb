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
    /// <summary>Per-sample Hessians of the outputs in Of; the key's IncludeJacobian says whether Jacobians come too.</summary>
    Hessian,
    /// <summary>Per-sample Laplacians over the key's Axes of wrt; the key's IncludeJacobian says whether Jacobians come too.</summary>
    Laplacian,
}
