using JacService.Core.Onnx;

namespace JacService.Server.Inference;

/// <summary>The Open Inference Protocol's datatype names: how a model's element types are announced and how inputs may arrive.</summary>
internal static class InferDatatype
{
    /// <summary>What every output travels as: the engine computes and answers in float32.</summary>
    public const string Fp32 = "FP32";

    public static string Of(ElementType type) => type switch
    {
        ElementType.Float => Fp32,
        ElementType.Float16 => "FP16",
        ElementType.Double => "FP64",
        ElementType.Int32 => "INT32",
        ElementType.Int64 => "INT64",
        ElementType.Bool => "BOOL",
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
    };

    /// <summary>
    /// Bytes per element in raw contents for each datatype an input may have; BYTES (strings) has no fixed size and
    /// no meaning for a numeric model, so it is not here.
    /// </summary>
    public static readonly IReadOnlyDictionary<string, int> RawSizes = new Dictionary<string, int>(StringComparer.Ordinal)
    {
        ["BOOL"] = 1, ["UINT8"] = 1, ["INT8"] = 1,
        ["UINT16"] = 2, ["INT16"] = 2, ["FP16"] = 2,
        ["UINT32"] = 4, ["INT32"] = 4, [Fp32] = 4,
        ["UINT64"] = 8, ["INT64"] = 8, ["FP64"] = 8,
    };
}
