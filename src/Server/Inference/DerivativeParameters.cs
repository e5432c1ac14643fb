using Google.Protobuf.Collections;
using JacService.Core;
using JacService.Protos.Inference;
using ProtoMode = JacService.Protos.V1.DerivativeMode;

namespace JacService.Server.Inference;

/// <summary>
/// The derivative a ModelInfer request asks for through its "jacservice.*" parameters, each meaning what the field of
/// the same name means in JacobianService's requests (docs/open-inference.md). Other parameters are the protocol's or
/// another server's and are ignored; an unknown "jacservice." one is refused, so a misspelt key is not silently a Predict.
/// </summary>
internal sealed record DerivativeParameters(DerivativeKind Kind, string Wrt, string[] Of, ProtoMode Mode, long[] Axes, bool IncludeJacobian)
{
    public const string Prefix = "jacservice.";
    public const string Derivative = Prefix + "derivative";
    public const string WrtKey = Prefix + "wrt";
    public const string OfKey = Prefix + "of";
    public const string ModeKey = Prefix + "mode";
    public const string AxesKey = Prefix + "axes";
    public const string IncludeJacobianKey = Prefix + "include_jacobian";

    private static readonly string[] Known = [Derivative, WrtKey, OfKey, ModeKey, AxesKey, IncludeJacobianKey];

    public static DerivativeParameters From(MapField<string, InferParameter> parameters)
    {
        foreach (var key in parameters.Keys)
            if (key.StartsWith(Prefix, StringComparison.Ordinal) && !Known.Contains(key))
                throw new InvalidRequestException($"unknown parameter '{key}'; JacService's are {string.Join(", ", Known)}");

        var kind = Text(parameters, Derivative) switch
        {
            "" or "none" => DerivativeKind.None,
            "jacobian" => DerivativeKind.Jacobian,
            "hessian" => DerivativeKind.Hessian,
            "laplacian" => DerivativeKind.Laplacian,
            var other => throw new InvalidRequestException($"parameter {Derivative} is '{other}'; expected none, jacobian, hessian or laplacian"),
        };
        var mode = Text(parameters, ModeKey) switch
        {
            "" or "auto" => ProtoMode.Auto,
            "forward" => ProtoMode.Forward,
            "reverse" => ProtoMode.Reverse,
            var other => throw new InvalidRequestException($"parameter {ModeKey} is '{other}'; expected auto, forward or reverse"),
        };
        var of = Text(parameters, OfKey).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var axes = Text(parameters, AxesKey).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(a => long.TryParse(a, out long v) ? v : throw new InvalidRequestException($"parameter {AxesKey} has '{a}'; expected integers separated by commas"))
            .ToArray();
        bool includeJacobian = parameters.TryGetValue(IncludeJacobianKey, out var include) && (include.ParameterChoiceCase == InferParameter.ParameterChoiceOneofCase.BoolParam
            ? include.BoolParam
            : throw new InvalidRequestException($"parameter {IncludeJacobianKey} must be a bool_param"));

        var derivative = new DerivativeParameters(kind, Text(parameters, WrtKey), of, mode, axes, includeJacobian);
        derivative.CheckApplies(parameters);
        return derivative;
    }

    /// <summary>Parameters that have no effect on what was asked for are refused: they are the caller's misunderstanding.</summary>
    private void CheckApplies(MapField<string, InferParameter> parameters)
    {
        if (Kind == DerivativeKind.None && parameters.Keys.FirstOrDefault(k => k.StartsWith(Prefix, StringComparison.Ordinal) && k != Derivative) is { } stray)
            throw new InvalidRequestException($"parameter '{stray}' needs {Derivative} (jacobian, hessian or laplacian)");
        if (Kind != DerivativeKind.Jacobian && parameters.ContainsKey(ModeKey))
            throw new InvalidRequestException($"parameter {ModeKey} applies to {Derivative}=jacobian only (second derivatives run forward)");
        if (Kind != DerivativeKind.Laplacian && parameters.ContainsKey(AxesKey))
            throw new InvalidRequestException($"parameter {AxesKey} applies to {Derivative}=laplacian only");
        if (Kind is not (DerivativeKind.Hessian or DerivativeKind.Laplacian) && parameters.ContainsKey(IncludeJacobianKey))
            throw new InvalidRequestException($"parameter {IncludeJacobianKey} applies to {Derivative}=hessian or laplacian only");
    }

    private static string Text(MapField<string, InferParameter> parameters, string key)
    {
        if (!parameters.TryGetValue(key, out var value)) return "";
        return value.ParameterChoiceCase == InferParameter.ParameterChoiceOneofCase.StringParam
            ? value.StringParam
            : throw new InvalidRequestException($"parameter {key} must be a string_param, got {value.ParameterChoiceCase}");
    }
}
