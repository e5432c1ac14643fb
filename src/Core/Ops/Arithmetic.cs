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
    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, S(1));

    public static Tensor Plus(this Tensor a, double b) => a.add(S(b), S(1));

    public static Tensor Minus(this Tensor a, Tensor b) => a.sub(b);

    public static Tensor Minus(this Tensor a, double b) => a.sub(S(b));

    /// <summary>s − a.</summary>
    public static Tensor From(this Tensor a, double s) => a.neg().add(S(s), S(1));
}
