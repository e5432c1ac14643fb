using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// Integer powers as products. TorchSharp's pow(Scalar), and square(), which calls it, hand libtorch the handle of a
/// temporary Scalar without keeping the Scalar alive; libtorch reads the exponent several times inside pow, so a
/// garbage collection in between can free it. Under load this showed as "INTERNAL ASSERT FAILED at
/// c10/core/Scalar.h" from LayerNormalization. A product of tensors takes no Scalar.
/// </summary>
internal static class Powers
{
    public static Tensor Square(Tensor x) => x * x;

    public static Tensor Cube(Tensor x) => x * x * x;
}
