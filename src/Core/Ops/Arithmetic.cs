using TorchSharp;
using static JacService.Core.Ops.Scalars;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// Sums and differences without temporary Scalars. TorchSharp's + calls add with an alpha of 1 made by implicit
/// conversion, a temporary Scalar that can be finalized while libtorch reads it (see <see cref="Scalars"/>); these
/// pass process-lived Scalars instead (sub takes no alpha).
/// </summary>
internal static class Arithmetic
{
    /// <summary>a + b; libtorch refuses a floating alpha when both are integers (shape arithmetic).</summary>
    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, a.is_floating_point() || b.is_floating_point() ? S(1) : L(1));

    public static Tensor Plus(this Tensor a, double b) => a.add(S(b), S(1));

    public static Tensor Minus(this Tensor a, Tensor b) => a.sub(b);

    public static Tensor Minus(this Tensor a, double b) => a.sub(S(b));

    /// <summary>
    /// a / b as ONNX divides: integers truncate toward zero (ONNX Runtime's and the reference's), where libtorch's
    /// division of integers returns floats (torch writes `dim // 3` in shape arithmetic as an integer Div).
    /// </summary>
    public static Tensor Quotient(this Tensor a, Tensor b) =>
        a.is_floating_point() || b.is_floating_point() ? a / b : a.div(b, RoundingMode.trunc);

    /// <summary>s − a.</summary>
    public static Tensor From(this Tensor a, double s) => a.neg().add(S(s), S(1));
}
