using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Testing;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>
/// Conv's reverse rule in float32 on one thread, as the server's executors run it: libtorch 2.10's CPU transposed
/// convolution (oneDNN's deconvolution) dropped a kernel tap there on every call for strided rows, which OpRuleTests, in
/// float64 (libtorch's own slow path), could not see. Every Conv row's reverse-mode Jacobian from the interpreter
/// must equal its forward-mode one.
/// </summary>
public class ConvTransposeTests
{
    public static TheoryData<string> ConvRows => new(OpRows.Rows.Where(r => r.OpType == "Conv").Select(r => r.Name));

    [Theory]
    [MemberData(nameof(ConvRows))]
    public void ReverseEqualsForwardInFloat32OnOneThread(string row)
    {
        var g = new OnnxBuilder();
        OpRows.ByName[row].Build(g);
        var bytes = OpForwardOrtTests.OrtModel(g.ToBytes(), OnnxType.Float);
        using var model = ModelVersion.Load(row, 1, bytes, new EngineLimits { CompileDerivatives = false });
        var inputs = g.Inputs.Select(i => new HostTensor(i.Shape, i.Data.Select(d => (float)d).ToArray())).ToArray();
        int threads = get_num_threads();
        set_num_threads(1);
        try
        {
            using var scope = NewDisposeScope();
            foreach (var wrt in Enumerable.Range(0, g.Inputs.Count).Where(i => g.Inputs[i].Differentiated))
            {
                var forward = model.Jacobian(inputs, wrt, [0], DerivativeMode.Forward).Jacobians.Single().Value;
                var reverse = model.Jacobian(inputs, wrt, [0], DerivativeMode.Reverse).Jacobians.Single().Value;
                float scale = Math.Max(1, forward.Data.Take((int)forward.Count).Max(MathF.Abs));
                for (int i = 0; i < forward.Count; i++)
                    Assert.True(MathF.Abs(forward.Data[i] - reverse.Data[i]) <= 1e-5f * scale,
                        $"{row}, d/d{g.Inputs[wrt].Name}, element {i}: forward {forward.Data[i]}, reverse {reverse.Data[i]}");
            }
        }
        finally
        {
            set_num_threads(threads);
        }
    }
}
