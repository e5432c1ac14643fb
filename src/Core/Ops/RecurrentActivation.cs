using JacService.Core.Compiled;
using static JacService.Core.Ops.Scalars;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// One of a recurrent cell's nonlinearities (ONNX's activations attribute): its value, and its first and second
/// derivatives written from its value y, as the elementwise rows write theirs; and its value and slope as ONNX nodes, for
/// derivative graphs.
/// </summary>
internal sealed record RecurrentActivation(string Name, Func<Tensor, Tensor> Apply, Func<Tensor, Tensor> Slope, Func<Tensor, Tensor> Curvature,
    Func<OnnxEmitter, string, string> Emitted, Func<OnnxEmitter, string, string> EmittedSlope)
{
    /// <summary>The activations served, as ONNX Runtime reads them: by name, any case; HardSigmoid takes an alpha and a beta.</summary>
    public static readonly string[] Names = ["Sigmoid", "Tanh", "Relu", "HardSigmoid"];

    public static bool Takes(string name) => name.Equals("HardSigmoid", StringComparison.OrdinalIgnoreCase);

    public static RecurrentActivation Of(string name, double alpha, double beta) => name.ToLowerInvariant() switch
    {
        // σ' = y(1 − y), σ'' = y(1 − y)(1 − 2y).
        "sigmoid" => new("Sigmoid", x => x.sigmoid(), y => y * y.From(1), y => y * y.From(1) * (y * S(-2)).Plus(1),
            (e, x) => e.Op("Sigmoid", x), (e, y) => e.Mul(y, e.Sub(e.Scalar(1), y))),
        // tanh' = 1 − y², tanh'' = −2y(1 − y²).
        "tanh" => new("Tanh", x => x.tanh(), y => (y * y).From(1), y => y * (y * y).From(1) * S(-2),
            (e, x) => e.Op("Tanh", x), (e, y) => e.Sub(e.Scalar(1), e.Mul(y, y))),
        // Relu's slope is sign(y): y is 0 or positive.
        "relu" => new("Relu", x => x.relu(), y => y.sign(), y => zeros_like(y), (e, x) => e.Op("Relu", x), (e, y) => e.Op("Sign", y)),
        // clamp(αx + β, 0, 1): slope α strictly inside, 0 where it is clamped.
        "hardsigmoid" => new("HardSigmoid", x => (x * S(alpha)).Plus(beta).clamp(S(0), S(1)),
            y => y.sign().relu_() * y.From(1).sign().relu_() * S(alpha), y => zeros_like(y),
            (e, x) => e.Op("HardSigmoid", [x], OnnxEmitter.Float("alpha", (float)alpha), OnnxEmitter.Float("beta", (float)beta)),
            (e, y) => e.Op("Where", e.Op("And", e.Op("Greater", y, e.Scalar(0)), e.Op("Less", y, e.Scalar(1))), e.Scalar((float)alpha), e.Scalar(0))),
        _ => throw new ArgumentException($"activation '{name}' is not one of {string.Join(", ", Names)}"),
    };
}
