using System.Globalization;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace JacService.Bench;

/// <summary>
/// BatchHessian and BatchLaplacian: the engine alone in-process on one thread (samples/s), to see the method's cost
/// without serving; the gRPC run beside PyTorch's peer is the --second-order flag.
/// </summary>
public static class SecondOrderBench
{
    public static void RunEngine(string root, string[] models, int[] batches, double seconds)
    {
        torch.set_num_threads(1);
        var dir = Path.Combine(root, "tests", "fixtures", "models");
        Console.WriteLine("Second derivatives, engine in-process, 1 thread, samples/s (median of timed windows)");
        Console.WriteLine();
        Console.WriteLine("| model | batch | Hessian (as served) | Hessian, contracted | Hessian, forward | Laplacian | Laplacian + Jacobian | forward Jacobian |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var name in models)
        {
            using var model = ModelVersion.Load(name, 1, File.ReadAllBytes(Path.Combine(dir, name, "1", "model.onnx")), new EngineLimits());
            int wrt = model.ResolveWrt(model.Inputs.First(i => i.ElementType.IsFloat()).Name);
            var of = model.ResolveOf([]);
            foreach (var batch in batches)
            {
                var inputs = model.Inputs.Select(i => Inputs.Random(i.Shape, batch)).ToArray();
                var axes = model.Requests.ResolveAxes([], inputs, wrt);
                double Rate(Action call) => Measure.PerSecond(batch, seconds, () =>
                {
                    using var scope = NewDisposeScope();
                    using var inference = inference_mode();
                    call();
                });
                double hessian = Rate(() => model.Hessian(inputs, wrt, of, includeJacobian: false));
                var device = inputs.Select((h, i) => tensor(h.Data, h.Shape).to_type(model.Inputs[i].ElementType.DeviceType(model.Graph.ComputeType))).ToArray();
                double contracted = Rate(() => model.SecondOrderTensors(device, wrt, of, SecondOrderKind.Hessian, method: HessianMethod.Contracted));
                double forward = Rate(() => model.SecondOrderTensors(device, wrt, of, SecondOrderKind.Hessian, method: HessianMethod.Forward));
                double laplacian = Rate(() => model.Laplacian(inputs, wrt, of, axes, includeJacobian: false));
                double both = Rate(() => model.Laplacian(inputs, wrt, of, axes, includeJacobian: true));
                double jacobian = Rate(() => model.Jacobian(inputs, wrt, of, DerivativeMode.Forward));
                Console.WriteLine($"| {name} | {batch} | {Fmt(hessian)} | {Fmt(contracted)} | {Fmt(forward)} | {Fmt(laplacian)} | {Fmt(both)} | {Fmt(jacobian)} |");
            }
        }
    }

    internal static string Fmt(double v) =>
        v >= 1000 ? (v / 1000).ToString("F1", CultureInfo.InvariantCulture) + "k" : v.ToString("F0", CultureInfo.InvariantCulture);
}
