using JacService.Core.Onnx.Proto;

namespace JacService.Core.Onnx;

/// <summary>
/// Integer attributes ONNX defines as flags, 0 or 1. ONNX Runtime reads some as "is 1" and others as "is not 0", the
/// engine as "is not 0", so a 2 would mean one thing to Predict and another to the derivatives (the model fuzzer found a
/// ReduceMax with keepdims 2, whose compiled derivative graph then failed in ONNX Runtime). Anything else is refused at load.
/// </summary>
internal static class FlagAttributes
{
    private static readonly HashSet<string> Names =
    [
        "allowzero", "antialias", "ceil_mode", "count_include_pad", "detect_negative", "detect_positive", "exclude_outside",
        "exclusive", "fmod", "input_forget", "interleaved", "inverse", "is_causal", "keepdims", "largest", "layout",
        "linear_before_reset", "noop_with_empty_axes", "onesided", "reverse", "select_last_index", "sorted", "training_mode",
        "transA", "transB", "upper",
    ];

    /// <summary>Why <paramref name="node"/>'s flags are not 0 or 1, or null.</summary>
    public static string? Check(NodeProto node) =>
        node.Attribute.FirstOrDefault(a => Names.Contains(a.Name) && a.Type == AttributeProto.Types.AttributeType.Int && a.I is not (0 or 1)) is { } bad
            ? $"attribute {bad.Name} is {bad.I}, where ONNX defines a flag, 0 or 1"
            : null;
}
