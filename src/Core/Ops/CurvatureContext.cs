using JacService.Core.Onnx;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// What a second-order rule sees: the node's forward context with each input's first-order tangent G ([n, ..input],
/// or null where the input does not depend on wrt), the node's outputs, and the pair basis that turns products of
/// gradients into second-order directions.
/// </summary>
public sealed class CurvatureContext(OpContext primal, Tensor[] outputs, PairBasis pairs)
{
    /// <summary>Inputs as duals whose tangents are the first-order directions only; attributes and optional inputs as in the forward rule.</summary>
    public OpContext Primal { get; } = primal;
    public NodeAttributes Attr => Primal.Attr;
    public PairBasis Basis { get; } = pairs;

    public Tensor In(int i) => Primal.In(i).Value;

    /// <summary>The first-order tangent of input <paramref name="i"/>, [n, ..input], or null.</summary>
    public Tensor? G(int i) => Primal.Optional(i)?.Tangent;

    public Tensor Out(int i) => outputs[i];

    public Tensor Pairs(Tensor a, Tensor b, Func<Tensor, Tensor, Tensor>? bilinear = null) => Basis.Pairs(a, b, bilinear);

    public Tensor SymmetricPairs(Tensor a, Tensor b, Func<Tensor, Tensor, Tensor>? bilinear = null) => Basis.SymmetricPairs(a, b, bilinear);
}
