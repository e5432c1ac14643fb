using System.Globalization;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace JacService.Bench;

/// <summary>
/// The engine alone, in-process on one thread: per fixture and batch, Jacobians/s in FORWARD, REVERSE and AUTO, and
/// the design alternative reverse mode was chosen over, libtorch's autograd through the forward rules (one backward
/// call per output element, as TorchSharp has no batched cotangents); and Vjp with one cotangent per sample (every
/// output), the in-process counterpart of functorch's vmap(vjp), to tell the engine's share of a served Vjp from the RPC's;
/// and Jvp with one tangent per sample, likewise.
/// </summary>
public static class EngineBench
{
    public static void Run(string root, string[]? models, int[] batches, double seconds)
    {
        torch.set_num_threads(1);
        var dir = Path.Combine(root, "tests", "fixtures", "models");
        Console.WriteLine("Engine in-process, 1 thread, Jacobians/s (median of timed windows)");
        Console.WriteLine();
        Console.WriteLine("| model | batch | forward | forward, compiled | reverse (VJP rules) | reverse, compiled | reverse (libtorch autograd) | auto (chose) | Vjp samples/s | Vjp, compiled | Vjp, served | Jvp samples/s | Jvp, compiled | Jvp, served |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var name in models ?? Directory.GetDirectories(dir).Select(Path.GetFileName).Order().ToArray()!)
        {
            var bytes = File.ReadAllBytes(Path.Combine(dir, name!, "1", "model.onnx"));
            // As served: AUTO's timed choice, and compiled graphs where timing found them faster than the interpreter.
            using var model = ModelVersion.Load(name!, 1, bytes, new EngineLimits());
            // Compiled graphs wherever they compile, and the interpreter alone: the two the served rates choose between.
            using var compiled = ModelVersion.Load(name!, 1, bytes, new EngineLimits { CalibrateAuto = false });
            using var interpreted = ModelVersion.Load(name!, 1, bytes, new EngineLimits { CompileDerivatives = false });
            // A copy of its own for autograd: plans built under inference mode hold folded constants autograd cannot save.
            using var taped = ModelVersion.Load(name!, 1, bytes, new EngineLimits());
            int wrt = model.ResolveWrt(model.Inputs.First(i => i.ElementType.IsFloat()).Name);
            var of = model.ResolveOf([]);
            foreach (var batch in batches)
            {
                var inputs = model.Inputs.Select(i => Inputs.Random(i.Shape, batch)).ToArray();
                double Rate(ModelVersion version, DerivativeMode mode) => Measure.PerSecond(batch, seconds, () =>
                {
                    using var scope = NewDisposeScope();
                    using var inference = inference_mode();
                    version.Jacobian(inputs, wrt, of, mode);
                });
                string Compiled(DerivativeMode mode)
                {
                    using var scope = NewDisposeScope();
                    if (compiled.Jacobian(inputs, wrt, of, mode).Compiled) return Fmt(Rate(compiled, mode));
                    var note = compiled.CompiledDerivatives.LastOrDefault(e => e.Mode == mode)?.Note;
                    Console.Error.WriteLine($"{name} {mode} at {batch}: {(string.IsNullOrEmpty(note) ? "the batch is over Engine:WorkingMemoryMiB" : note)}");
                    return "-";
                }
                double forward = Rate(interpreted, DerivativeMode.Forward), reverse = Rate(interpreted, DerivativeMode.Reverse);
                string forwardCompiled = Compiled(DerivativeMode.Forward), reverseCompiled = Compiled(DerivativeMode.Reverse);
                double auto = Rate(model, DerivativeMode.Auto);
                double autograd = Measure.PerSecond(batch, seconds, () =>
                {
                    using var scope = NewDisposeScope();
                    AutogradJacobian(taped, inputs, wrt, of);
                });
                var cotangents = of.Select(o => Inputs.Random([-1, .. model.OutputSampleShape(inputs, o)], batch)).ToArray();
                double Vjp(ModelVersion version) => Measure.PerSecond(batch, seconds, () =>
                {
                    using var scope = NewDisposeScope();
                    using var inference = inference_mode();
                    version.Vjp(inputs, wrt, of, cotangents);
                });
                double vjp = Vjp(interpreted), vjpCompiled = Vjp(compiled), vjpServed = Vjp(model);
                var tangents = Inputs.Random(model.Inputs[wrt].Shape, batch);
                double Jvp(ModelVersion version) => Measure.PerSecond(batch, seconds, () =>
                {
                    using var scope = NewDisposeScope();
                    using var inference = inference_mode();
                    version.Jvp(inputs, wrt, of, tangents);
                });
                double jvp = Jvp(interpreted), jvpCompiled = Jvp(compiled), jvpServed = Jvp(model);
                var chose = model.DerivativeChoices.FirstOrDefault(c => c.Batch == batch)?.Mode;
                Console.WriteLine($"| {name} | {batch} | {Fmt(forward)} | {forwardCompiled} | {Fmt(reverse)} | {reverseCompiled} | {Fmt(autograd)} | {Fmt(auto)} ({chose}) | {Fmt(vjp)} | {Fmt(vjpCompiled)} | {Fmt(vjpServed)} | {Fmt(jvp)} | {Fmt(jvpCompiled)} | {Fmt(jvpServed)} |");
            }
        }
    }

    /// <summary>Rows of every sample's Jacobian by autograd: the forward rules recorded on the tape, one backward per output element.</summary>
    private static void AutogradJacobian(ModelVersion model, HostTensor[] host, int wrt, int[] of)
    {
        var inputs = host.Select((h, i) =>
        {
            var t = tensor(h.Data, h.Shape).to_type(model.Inputs[i].ElementType.DeviceType(model.Graph.ComputeType));
            return i == wrt ? t.requires_grad_(true) : t;
        }).ToArray();
        var outputs = model.Forward(inputs);
        foreach (var o in of)
        {
            var flat = outputs[o].reshape(outputs[o].shape[0], -1);
            for (long i = 0; i < flat.shape[1]; i++)
                torch.autograd.grad([flat[.., i].sum()], [inputs[wrt]], retain_graph: true);
        }
    }

    private static string Fmt(double v) =>
        v >= 1000 ? (v / 1000).ToString("F1", CultureInfo.InvariantCulture) + "k" : v.ToString("F0", CultureInfo.InvariantCulture);
}
