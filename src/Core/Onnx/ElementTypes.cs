using TorchSharp;

namespace JacService.Core.Onnx;

/// <summary>How each <see cref="ElementType"/> is named in ONNX and held on the device.</summary>
public static class ElementTypes
{
    internal static bool TryFromOnnx(int code, out ElementType type)
    {
        type = (ElementType)code;
        return Enum.IsDefined(type);
    }

    public static bool IsFloat(this ElementType t) => t is ElementType.Float or ElementType.Float16 or ElementType.Double;

    public static string OnnxName(this ElementType t) => t switch
    {
        ElementType.Float => "float",
        ElementType.Int32 => "int32",
        ElementType.Int64 => "int64",
        ElementType.Bool => "bool",
        ElementType.Float16 => "float16",
        ElementType.Double => "double",
        _ => t.ToString().ToLowerInvariant(),
    };

    /// <summary>
    /// Every float type computes in the engine's compute type (float32 when serving; float64 in rule tests),
    /// every integer type as int64 (indices and shapes), so ops never meet mixed widths.
    /// </summary>
    internal static torch.ScalarType DeviceType(this ElementType t, torch.ScalarType computeType) => t switch
    {
        ElementType.Float or ElementType.Float16 or ElementType.Double => computeType,
        ElementType.Int32 or ElementType.Int64 => torch.ScalarType.Int64,
        ElementType.Bool => torch.ScalarType.Bool,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };
}
