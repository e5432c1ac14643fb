namespace JacService.Server.Inference;

/// <summary>What a ModelInfer request asks for besides the outputs (its "jacservice.derivative" parameter).</summary>
internal enum DerivativeKind
{
    None,
    Jacobian,
    Hessian,
    Laplacian,
}
