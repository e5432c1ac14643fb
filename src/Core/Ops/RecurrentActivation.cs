using static JacService.Core.Ops.Scalars;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// One of a recurrent cell's nonlinearities (ONNX's activations attribute): its value, and its first and second
/// derivatives written from its value y, as the elementwise rows write theirs.
/// </summary>
internal sealed record RecurrentActivation(string Name, Func<Tensor, Tensor> Apply, Func<Tensor, Tensor> Slope, Func<Tensor, Tensor> Curvature)
{
    /// <summary>The activations served, as ONNX Runtime reads them: by name, any case; HardSigmoid takes an alpha and a beta.</summary>
    public static readonly string[] Names = ["Sigmoid", "Tanh", "Relu", "HardSigmoid"];

    public static bool Takes(string name) => name.Equals("HardSigmoid", StringComparison.OrdinalIgnoreCase);

    public static RecurrentActivation Of(string name, double alpha, double beta) => name.ToLowerInvariant() switch
    {
        // σ' = y(1 − y), σ'' = y(1 − y)(1 − 2y).
        "sigmoid" => new("Sigmoid", x => x.sigmoid(), y => y * y.From(1), y => y * y.From(1) * (y * S(-2)).Plus(1)),
        // tanh' = 1 − y², tanh'' = −2y(1 − y²).
        "tanh" => new("Tanh", x => x.tanh(), y => (y * y).From(1), y => y * (y * y).From(1) * S(-2)),
        // Relu's slope is sign(y): y is 0 or positive.
        "relu" => new("Relu", x => x.relu(), y => y.sign(), y => zeros_like(y)),
        // clamp(αx + β, 0, 1): slope α strictly inside, 0 where it is clamped.
        "hardsigmoid" => new("HardSigmoid", x => (x * S(alpha)).Plus(beta).clamp(S(0), S(1)),
            y => y.sign().relu_() * y.From(1).sign().relu_() * S(alpha), y => zeros_like(y)),
        _ => throw new ArgumentException($"activation '{name}' is not one of {string.Join(", ", Names)}"),
    };
}
