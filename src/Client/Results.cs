using JacService.Protos.V1;

namespace JacService.Client;

/// <summary>Outputs of a Predict call, by output name, with the batch axis first.</summary>
public sealed record PredictResult(string Model, string Version, IReadOnlyDictionary<string, FloatTensor> Outputs);

/// <summary>
/// Outputs and Jacobians of a Jacobian or BatchJacobian call, by output name. For one sample,
/// <c>Jacobians[o].Shape = out_shape(o) ++ in_shape(wrt)</c>; for a batch the batch axis comes first on both.
/// </summary>
public sealed record JacobianResult(
    string Model,
    string Version,
    IReadOnlyDictionary<string, FloatTensor> Outputs,
    IReadOnlyDictionary<string, FloatTensor> Jacobians)
{
    /// <summary>The mode that computed the Jacobians (FORWARD or REVERSE); for a stream, the first chunk's.</summary>
    public DerivativeMode Mode { get; init; }
}

/// <summary>One model version in the repository. <see cref="State"/> is READY, LOADING or FAILED (then <see cref="Error"/> says why).</summary>
public sealed record ModelDescription(
    string Name,
    string Version,
    string State,
    string Error,
    IReadOnlyList<TensorDescription> Inputs,
    IReadOnlyList<TensorDescription> Outputs,
    long Opset);

/// <summary>A model input or output: -1 in <see cref="Shape"/> for the batch axis and other dynamic axes; ONNX type name ("float", "int64", ...).</summary>
public sealed record TensorDescription(string Name, long[] Shape, string ElementType);
