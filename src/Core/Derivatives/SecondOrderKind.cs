namespace JacService.Core.Derivatives;

/// <summary>Which second derivatives a request asks for.</summary>
public enum SecondOrderKind
{
    /// <summary>Every second partial of wrt: [B] ++ out ++ in ++ in.</summary>
    Hessian,
    /// <summary>The trace of the Hessian over chosen elements of wrt: [B] ++ out.</summary>
    Laplacian,
}
