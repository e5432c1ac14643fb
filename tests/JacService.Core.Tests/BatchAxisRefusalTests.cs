using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Ops;
using JacService.Testing;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>
/// Every derivative a model serves refuses outputs that lose the batch axis before any pass, as a Predict does after
/// one: a pass over such a model sizes its per-sample results wrongly, and the op row "MatMul 1-D x 2-D" (a 1-D input
/// whose only axis MatMul contracts) ended the test host in libtorch through a reverse-mode Jacobian.
/// </summary>
public class BatchAxisRefusalTests
{
    /// <summary>Op rows whose output has no batch axis first when the row's model is read as batched.</summary>
    private static readonly string[] Rows =
    [
        "MatMul 1-D x 2-D, both differentiated",
        "MatMul 1-D x 3-D, both differentiated",
        "ReduceSum all axes to a scalar",
        "Flatten axis 0",
    ];

    public static TheoryData<string, string> RowsAndKinds
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (var row in Rows)
                foreach (var kind in new[] { "jacobian forward", "jacobian reverse", "jvp", "vjp", "hessian", "laplacian" })
                    data.Add(row, kind);
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(RowsAndKinds))]
    public void ADerivativeOfAnOutputWithoutTheBatchAxisIsRefusedBeforeAnyPass(string row, string kind)
    {
        var g = new OnnxBuilder();
        OpRows.ByName[row].Build(g);
        var bytes = OpForwardOrtTests.OrtModel(g.ToBytes(), OnnxType.Float);
        using var model = ModelVersion.Load(row, 1, bytes, new EngineLimits());
        var inputs = g.Inputs.Select(i => new HostTensor(i.Shape, i.Data.Select(d => (float)d).ToArray())).ToArray();
        int wrt = g.Inputs.ToList().FindIndex(i => i.Differentiated);
        var of = model.ResolveOf([]);
        using var scope = NewDisposeScope();

        Action call = kind switch
        {
            "jacobian forward" => () => model.Jacobian(inputs, wrt, of, DerivativeMode.Forward),
            "jacobian reverse" => () => model.Jacobian(inputs, wrt, of, DerivativeMode.Reverse),
            "jvp" => () => model.Jvp(inputs, wrt, of, Ones(inputs[wrt].Shape)),
            "vjp" => () => model.Vjp(inputs, wrt, of, [Ones(Predicted(model, inputs, of[0]))]),
            "hessian" => () => model.Hessian(inputs, wrt, of, includeJacobian: true),
            _ => () => model.Laplacian(inputs, wrt, of, Enumerable.Range(0, (int)Shapes.Product(inputs[wrt].Shape[1..])).ToArray(), includeJacobian: true),
        };
        var refused = Assert.Throws<NodeEvaluationException>(call);
        Assert.Contains("every output must keep the inputs' batch axis first", refused.Message);
    }

    /// <summary>The shape a cotangent takes: the output's, as the engine's forward pass computes it (no batch axis to rely on).</summary>
    private static long[] Predicted(ModelVersion model, HostTensor[] inputs, int output)
    {
        var device = inputs.Select(i => tensor(i.Data, i.Shape)).ToArray();
        return model.Forward(device)[output].shape;
    }

    private static HostTensor Ones(long[] shape) => new(shape, Enumerable.Repeat(1f, (int)Shapes.Product(shape)).ToArray());
}
