namespace JacService.Client;

/// <summary>One model version in the repository. <see cref="State"/> is READY, LOADING or FAILED (then <see cref="Error"/> says why).</summary>
public sealed record ModelDescription(
    string Name,
    string Version,
    string State,
    string Error,
    IReadOnlyList<TensorDescription> Inputs,
    IReadOnlyList<TensorDescription> Outputs,
    long Opset);
