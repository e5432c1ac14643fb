using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Onnx;
using JacService.Protos.V1;
using TorchSharp;
using static TorchSharp.torch;

namespace JacService.Bench;

/// <summary>
/// BatchHessian and BatchLaplacian over gRPC beside PyTorch's best (functorch vmap(hessian), and vmap(hessian) then the
/// trace for the Laplacian; bench/peer_hessian.py), in the same run; and the engine alone in-process on one thread,
/// with both Hessian methods, to see their cost without serving.
/// </summary>
public static class SecondOrderBench
{
    public static async Task RunServedAsync(string root, string[] models, int[] batches, double seconds, double warmup,
        JacobianService.JacobianServiceClient client, bool noPeer)
    {
        var modelsDir = Path.Combine(root, "tests", "fixtures", "models");
        await WarmUp(client, models, warmup);
        var peer = noPeer ? [] : RunPeer(root, models, batches, seconds);
        var rows = new List<string>();
        foreach (var name in models)
        {
            using var model = ModelVersion.Load(name, 1, File.ReadAllBytes(Path.Combine(modelsDir, name, "1", "model.onnx")), new EngineLimits());
            var wrt = model.Inputs.First(i => i.ElementType.IsFloat()).Name;
            foreach (var batch in batches)
            {
                var inputs = model.Inputs.Select(i => Inputs.Random(i.Shape, batch)).ToArray();
                var hessian = new BatchHessianRequest { Model = name, Wrt = wrt };
                var laplacian = new BatchLaplacianRequest { Model = name, Wrt = wrt };
                var withJacobian = new BatchLaplacianRequest { Model = name, Wrt = wrt, IncludeJacobian = true };
                for (int i = 0; i < inputs.Length; i++)
                {
                    var t = Inputs.ToProto(inputs[i]);
                    hessian.Inputs[model.Inputs[i].Name] = t;
                    laplacian.Inputs[model.Inputs[i].Name] = t;
                    withJacobian.Inputs[model.Inputs[i].Name] = t;
                }
                // Two concurrent clients use both cores, as the peer's best uses two threads where that is faster.
                double h = Measure.PerSecondConcurrent(batch, seconds, 2, () => client.BatchHessian(hessian));
                double l = Measure.PerSecondConcurrent(batch, seconds, 2, () => client.BatchLaplacian(laplacian));
                double lj = Measure.PerSecondConcurrent(batch, seconds, 2, () => client.BatchLaplacian(withJacobian));
                var p = peer.GetValueOrDefault((name, batch));
                string Ratio(double ours, double? theirs) => theirs is { } v ? $"**{ours / v:F1}x**" : "n/a";
                rows.Add($"| {name} | {batch} | {Fmt(h)} | {Peer(p?.Hessian, p?.HessianConfig)} | {Ratio(h, p?.Hessian)} | " +
                    $"{Fmt(l)} | {Fmt(lj)} | {Peer(p?.Laplacian, p?.LaplacianConfig)} | {Ratio(l, p?.Laplacian)} |");
                Console.Error.WriteLine(rows[^1]);
            }
        }
        Console.WriteLine($"Second derivatives over gRPC (2 concurrent clients), samples/s, median of timed windows; {Environment.ProcessorCount} vCPUs.");
        Console.WriteLine("Peer: PyTorch functorch, float32, best of 1 and 2 threads and of vmapped chunk sizes (whole batch, 16, 4, 1):");
        Console.WriteLine("vmap(hessian(f)) for the Hessian, the same then the trace for the Laplacian.");
        Console.WriteLine();
        Console.WriteLine("| model | batch | BatchHessian | peer Hessian (config) | Hessian / peer | BatchLaplacian | BatchLaplacian + Jacobian | peer Hessian + trace (config) | Laplacian / peer |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        rows.ForEach(Console.WriteLine);
    }

    private sealed record PeerBest(double? Hessian, string HessianConfig, double? Laplacian, string LaplacianConfig);

    private static string Peer(double? rate, string? config) => rate is { } v ? $"{Fmt(v)} ({config})" : "n/a";

    /// <summary>A fresh server rejits its hot paths for ~10 s (docs/benchmarks.md): serve both calls first.</summary>
    private static async Task WarmUp(JacobianService.JacobianServiceClient client, string[] models, double seconds)
    {
        var end = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        var requests = models.Select(name =>
        {
            var info = client.GetModel(new GetModelRequest { Model = name });
            var hessian = new BatchHessianRequest { Model = name, Wrt = info.Inputs[0].Name };
            var laplacian = new BatchLaplacianRequest { Model = name, Wrt = info.Inputs[0].Name };
            foreach (var input in info.Inputs)
            {
                var t = Inputs.ToProto(Inputs.Random(input.Shape.ToArray(), 4));
                hessian.Inputs[input.Name] = t;
                laplacian.Inputs[input.Name] = t;
            }
            return (hessian, laplacian);
        }).ToList();
        for (int i = 0; Stopwatch.GetTimestamp() < end; i++)
        {
            var (hessian, laplacian) = requests[i % requests.Count];
            await client.BatchHessianAsync(hessian);
            await client.BatchLaplacianAsync(laplacian);
        }
    }

    /// <summary>bench/peer_hessian.py's best line per point and quantity.</summary>
    private static Dictionary<(string, int), PeerBest> RunPeer(string root, string[] models, int[] batches, double seconds)
    {
        var best = new Dictionary<(string, int), PeerBest>();
        string[] arguments = ["--models", string.Join(",", models), "--batch", string.Join(",", batches),
            "--seconds", seconds.ToString(CultureInfo.InvariantCulture), "--threads", "1,2"];
        foreach (var e in global::Peer.Lines(root, "peer_hessian.py", arguments, reuseLargeBlocks: true))
        {
            if (e.GetProperty("op").GetString() != "best" || e.GetProperty("samples_per_s").ValueKind != JsonValueKind.Number) continue;
            var key = (e.GetProperty("model").GetString()!, e.GetProperty("batch").GetInt32());
            var current = best.GetValueOrDefault(key) ?? new PeerBest(null, "", null, "");
            double rate = e.GetProperty("samples_per_s").GetDouble();
            string config = $"{e.GetProperty("threads").GetInt32()}t, chunk {e.GetProperty("chunk")}";
            best[key] = e.GetProperty("quantity").GetString() == "hessian"
                ? current with { Hessian = rate, HessianConfig = config }
                : current with { Laplacian = rate, LaplacianConfig = config };
        }
        return best;
    }

    public static void RunEngine(string root, string[] models, int[] batches, double seconds)
    {
        torch.set_num_threads(1);
        var dir = Path.Combine(root, "tests", "fixtures", "models");
        Console.WriteLine("Second derivatives, engine in-process, 1 thread, samples/s (median of timed windows): the interpreter (its");
        Console.WriteLine("Hessian by contraction and by carrying every entry forward, and as served) beside the compiled graph");
        Console.WriteLine();
        Console.WriteLine("| model | batch | Hessian, contracted | Hessian, forward | Hessian, interpreter | **Hessian, compiled** | Laplacian, interpreter | **Laplacian, compiled** | Laplacian + Jacobian, compiled |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var name in models)
        {
            var bytes = File.ReadAllBytes(Path.Combine(dir, name, "1", "model.onnx"));
            using var interpreter = ModelVersion.Load(name, 1, bytes, new EngineLimits { CompileDerivatives = false });
            // Without calibration the graph serves every batch, so its column is the graph's rate.
            using var compiled = ModelVersion.Load(name, 1, bytes, new EngineLimits { CalibrateAuto = false });
            int wrt = interpreter.ResolveWrt(interpreter.Inputs.First(i => i.ElementType.IsFloat()).Name);
            var of = interpreter.ResolveOf([]);
            foreach (var batch in batches)
            {
                var inputs = interpreter.Inputs.Select(i => Inputs.Random(i.Shape, batch)).ToArray();
                var axes = interpreter.Requests.ResolveAxes([], inputs, wrt);
                double Rate(Action call) => Measure.PerSecond(batch, seconds, () =>
                {
                    using var scope = NewDisposeScope();
                    using var inference = inference_mode();
                    call();
                });
                var device = inputs.Select((h, i) => tensor(h.Data, h.Shape).to_type(interpreter.Inputs[i].ElementType.DeviceType(interpreter.Graph.ComputeType))).ToArray();
                double contracted = Rate(() => interpreter.SecondOrderTensors(device, wrt, of, SecondOrderKind.Hessian, method: HessianMethod.Contracted));
                double forward = Rate(() => interpreter.SecondOrderTensors(device, wrt, of, SecondOrderKind.Hessian, method: HessianMethod.Forward));
                double hessian = Rate(() => interpreter.Hessian(inputs, wrt, of, includeJacobian: false));
                double hessianGraph = GraphRate(() => compiled.Hessian(inputs, wrt, of, includeJacobian: false));
                double laplacian = Rate(() => interpreter.Laplacian(inputs, wrt, of, axes, includeJacobian: false));
                double laplacianGraph = GraphRate(() => compiled.Laplacian(inputs, wrt, of, axes, includeJacobian: false));
                double both = GraphRate(() => compiled.Laplacian(inputs, wrt, of, axes, includeJacobian: true));
                Console.WriteLine($"| {name} | {batch} | {Fmt(contracted)} | {Fmt(forward)} | {Fmt(hessian)} | **{Fmt(hessianGraph)}** | {Fmt(laplacian)} | **{Fmt(laplacianGraph)}** | {Fmt(both)} |");

                // The graph's rate, or NaN (printed "-") where the interpreter serves: no graph, or a batch over the working memory.
                double GraphRate(Func<EngineResult> call)
                {
                    using (NewDisposeScope())
                        if (!call().Compiled) return double.NaN;
                    return Rate(() => call());
                }
            }
            foreach (var entry in compiled.CompiledDerivatives.Where(e => !e.Compiled))
                Console.WriteLine($"{name}: {entry.Kind} not compiled: {entry.Note}");
        }
    }

    internal static string Fmt(double v) =>
        double.IsNaN(v) ? "-" : v >= 1000 ? (v / 1000).ToString("F1", CultureInfo.InvariantCulture) + "k" : v.ToString("F0", CultureInfo.InvariantCulture);
}
