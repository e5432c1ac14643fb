using TorchSharp;
using static TorchSharp.torch;

namespace JacService.Bench;

/// <summary>
/// Derivatives of piecewise activations applied to a direction (d·ct), one thread: each rule's form with a comparison
/// to bool and a bool cast or masked_fill, against float-only forms, on wide_classifier's hidden layer ([256, 512],
/// in cache) and small_cnn's Elu input ([256, 16, 14, 14], 3.2 MB a tensor). docs/benchmarks.md, "Masks without bools".
/// </summary>
public static class MaskProbe
{
    public static void Run()
    {
        torch.set_num_threads(1);
        using var inference = inference_mode();
        foreach (long[] shape in new[] { new long[] { 256, 512 }, [256, 16, 14, 14] })
        {
            var x = randn(shape);
            var ct = randn(shape);
            var relu = x.relu();
            var elu = x.elu();
            var leaky = x.leaky_relu(0.01);
            double a = 1.6732632423543772, g = 1.0507009873554805, k = a * g;
            var selu = x.selu();
            Console.WriteLine($"| [{string.Join(", ", shape)}], ct · dy/dx | µs per call, median of 50 |");
            Console.WriteLine("|---|---:|");
            Row("Relu, gt(x, 0).to_type (before)", () => ct * x.gt(0).to_type(ScalarType.Float32));
            Row("Relu, sign(x).relu_()", () => ct * x.sign().relu_());
            Row("Relu, sign(y)", () => ct * relu.sign());
            Row("Elu, (y + 1).masked_fill(gt(x, 0), 1) (before)", () => ct * (elu + 1).masked_fill(x.gt(0), 1));
            Row("Elu, (y + 1).clamp_max_(1)", () => ct * (elu + 1).clamp_max_(1));
            Row("Selu, (y + γα).masked_fill(gt(x, 0), γ) (before)", () => ct * (selu + k).masked_fill(x.gt(0), g));
            Row("Selu, (y + γα).clamp_max_(γα).add_(step, γ − γα)", () => ct * (selu + k).clamp_max_(k).add_(x.sign().relu_(), g - k));
            Row("LeakyRelu, full(α).masked_fill_(gt(x, 0), 1) (before)", () => ct * x.new_full(shape, 0.01).masked_fill_(x.gt(0), 1));
            Row("LeakyRelu, step.mul_(1 − α).add_(α)", () => ct * x.sign().relu_().mul_(0.99).add_(0.01));
            Check("Relu", ct * x.gt(0).to_type(ScalarType.Float32), ct * relu.sign());
            Check("Elu", (elu + 1).masked_fill(x.gt(0), 1), (elu + 1).clamp_max_(1));
            Check("Selu", (selu + k).masked_fill(x.gt(0), g), (selu + k).clamp_max_(k).add_(x.sign().relu_(), g - k));
            Check("LeakyRelu", x.new_full(shape, 0.01).masked_fill_(x.gt(0), 1), x.sign().relu_().mul_(0.99).add_(0.01));
        }
    }

    private static void Row(string label, Func<Tensor> call) => PoolProbe.Time(label, call);

    private static void Check(string what, Tensor before, Tensor after) =>
        Console.WriteLine($"{what}: largest difference {(before - after).abs().max().item<float>():G3}");
}
