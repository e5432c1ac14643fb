using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using JacService.Core.Models;
using JacService.Core.Onnx;
using JacService.Core.Planning;
using JacService.Protos.V1;
using TorchSharp;

namespace JacService.Bench;

/// <summary>
/// BatchJacobian over gRPC in FORWARD, REVERSE and AUTO, and Vjp with one cotangent per sample, beside PyTorch's best:
/// the faster of vmap(jacfwd) and vmap(jacrev), each at 1 and 2 threads (--peer-threads), and vmap(vjp) likewise, all in the
/// same run. The server's side is also shown at its best: the most items per second over a few numbers of concurrent
/// callers, as the peer's over its thread counts. Also how close each mode gets to the machine's GEMM ceiling.
/// </summary>
public static class ModesBench
{
    public sealed record PeerBest(double? Jacobians, string Config, double? Vjp, string VjpConfig);

    /// <summary>A served rate and the number of concurrent callers it was reached with.</summary>
    private sealed record Served(double Rate, int Callers);

    public static async Task RunAsync(string root, string[] models, int[] batches, double seconds, double warmup,
        int[] callers, JacobianService.JacobianServiceClient client, bool noPeer, string peerThreads)
    {
        var modelsDir = Path.Combine(root, "tests", "fixtures", "models");
        await WarmUp(client, warmup);
        var peer = noPeer ? [] : RunPeer(root, models, batches, seconds, peerThreads);
        double ceiling = GemmCeiling();
        var rows = new List<string>();
        var flopRows = new List<string>();
        foreach (var name in models)
        {
            var bytes = File.ReadAllBytes(Path.Combine(modelsDir, name, "1", "model.onnx"));
            using var model = ModelVersion.Load(name, 1, bytes, new EngineLimits());
            int wrt = model.ResolveWrt(model.Inputs.First(i => i.ElementType.IsFloat()).Name);
            var of = model.ResolveOf([]);
            var (macs, n, m) = Sizes(model, wrt, of);
            foreach (var batch in batches)
            {
                var inputs = model.Inputs.Select(i => Inputs.Random(i.Shape, batch)).ToArray();
                Task<Served> Jacobians(Protos.V1.DerivativeMode mode)
                {
                    var request = new BatchJacobianRequest { Model = name, Wrt = model.Inputs[wrt].Name, Mode = mode };
                    for (int i = 0; i < inputs.Length; i++) request.Inputs[model.Inputs[i].Name] = Inputs.ToProto(inputs[i]);
                    return Rate(batch, seconds, callers, () => client.BatchJacobianAsync(request).ResponseAsync);
                }
                var forward = await Jacobians(Protos.V1.DerivativeMode.Forward);
                var reverse = await Jacobians(Protos.V1.DerivativeMode.Reverse);
                var auto = await Jacobians(Protos.V1.DerivativeMode.Auto);
                var info = client.GetModel(new GetModelRequest { Model = name });
                var chose = info.DerivativeChoices.FirstOrDefault(c => c.Batch == batch)?.Mode.ToString() ?? "?";

                var vjpRequest = new VjpRequest { Model = name, Wrt = model.Inputs[wrt].Name };
                for (int i = 0; i < inputs.Length; i++) vjpRequest.Inputs[model.Inputs[i].Name] = Inputs.ToProto(inputs[i]);
                foreach (var o in of)
                {
                    var shape = model.OutputSampleShape(inputs, o);
                    vjpRequest.Cotangents[model.Outputs[o].Name] = Inputs.ToProto(Inputs.Random([-1, .. shape], batch));
                }
                var vjp = await Rate(batch, seconds, callers, () => client.VjpAsync(vjpRequest).ResponseAsync);

                var p = peer.GetValueOrDefault((name, batch));
                string peerJac = p?.Jacobians is { } pj ? $"{Fmt(pj)} ({p.Config})" : "n/a";
                string ratio = p?.Jacobians is { } pv ? $"{auto.Rate / pv:F2}x" : "n/a";
                string peerVjp = p?.Vjp is { } pvj ? $"{Fmt(pvj)} ({p.VjpConfig})" : "n/a";
                string vjpRatio = p?.Vjp is { } pvv ? $"{vjp.Rate / pvv:F2}x" : "n/a";
                rows.Add($"| {name} | {batch} | {Fmt(forward)} | {Fmt(reverse)} | {Fmt(auto.Rate)} ({chose}, {auto.Callers}c) | {peerJac} | **{ratio}** | " +
                    $"{Fmt(vjp)} | {peerVjp} | **{vjpRatio}** |");
                Console.Error.WriteLine(rows[^1]);
                // Useful FLOPs of a Jacobian: the primal plus one linear-op pass per direction (n forward, m reverse).
                double Gflops(double rate, long directions) => rate * 2.0 * macs * (1 + directions) / 1e9;
                flopRows.Add($"| {name} | {batch} | {n} | {m} | {2.0 * macs / 1e6:F2} | {Gflops(forward.Rate, n):F1} ({Gflops(forward.Rate, n) / ceiling:P0}) | " +
                    $"{Gflops(reverse.Rate, m):F1} ({Gflops(reverse.Rate, m) / ceiling:P0}) |");
            }
        }
        Console.WriteLine($"BatchJacobian over gRPC, Jacobians/s, median of timed windows, the best of {string.Join(", ", callers)} concurrent " +
            $"callers (shown as 4c); {Environment.ProcessorCount} vCPUs.");
        Console.WriteLine($"Peer: PyTorch functorch, best of vmap(jacfwd) and vmap(jacrev) at {peerThreads} threads (jacobians), best of vmap(vjp) at {peerThreads} threads (vjp).");
        Console.WriteLine();
        Console.WriteLine("| model | batch | FORWARD | REVERSE | AUTO (chose) | peer best | AUTO / peer | Vjp samples/s | peer vmap(vjp) | Vjp / peer |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        rows.ForEach(Console.WriteLine);
        Console.WriteLine();
        Console.WriteLine($"GEMM ceiling of this machine: {ceiling:F0} GFLOP/s (2 x one thread's float32 [1024x1024]x[1024x1024]).");
        Console.WriteLine("Useful GFLOP/s of the linear ops (Gemm, MatMul, Conv) and their share of the ceiling:");
        Console.WriteLine();
        Console.WriteLine("| model | batch | inputs n | outputs m | primal MFLOP/sample | FORWARD GFLOP/s | REVERSE GFLOP/s |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|");
        flopRows.ForEach(Console.WriteLine);
    }

    /// <summary>A fresh server rejits its hot paths for ~10 s (docs/benchmarks.md): serve mixed calls first.</summary>
    private static async Task WarmUp(JacobianService.JacobianServiceClient client, double seconds)
    {
        var request = new BatchJacobianRequest { Model = "mlp_tanh" };
        request.Inputs["x"] = Inputs.ToProto(Inputs.Random([-1, 32], 16));
        var end = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        var modes = new[] { Protos.V1.DerivativeMode.Forward, Protos.V1.DerivativeMode.Reverse };
        for (int i = 0; Stopwatch.GetTimestamp() < end; i++)
        {
            request.Mode = modes[i % 2];
            await client.BatchJacobianAsync(request);
        }
    }

    /// <summary>
    /// The most items per second over the numbers of concurrent callers: with few callers the server idles while each
    /// answer travels and the next call arrives, and its executors start each batch with cold caches (docs/benchmarks.md,
    /// "Callers, and executors that sleep"). A call slower than 5 s (small_cnn's forward mode at batch 256) is timed
    /// once instead, as the windows would take minutes.
    /// </summary>
    private static async Task<Served> Rate(int items, double seconds, int[] callers, Func<Task> call)
    {
        long start = Stopwatch.GetTimestamp();
        await call();
        var first = Stopwatch.GetElapsedTime(start);
        if (first > TimeSpan.FromSeconds(5)) return new Served(items / first.TotalSeconds, 1);
        Served? best = null;
        foreach (var n in callers)
        {
            double rate = await Measure.PerSecondAsync(items, seconds, n, call);
            Console.Error.WriteLine($"  {n} callers: {Fmt(rate)}/s");
            if (best is null || rate > best.Rate) best = new Served(rate, n);
        }
        return best!;
    }

    /// <summary>Multiply-adds per sample of the linear ops, and the per-sample sizes of wrt (n) and of the outputs (m).</summary>
    private static (long Macs, long N, long M) Sizes(ModelVersion model, int wrt, int[] of)
    {
        var graph = model.Graph;
        var shapes = graph.Inputs.Select(i => i.Shape.Select((d, a) => a == 0 ? 1 : d).ToArray()).ToArray();
        using var scope = torch.NewDisposeScope();
        using var plan = Planner.Build(graph, shapes);
        long macs = 0;
        foreach (var node in plan.Steps)
        {
            long Elements(int id) => plan.ValueShapes[id]!.Aggregate(1L, (p, d) => p * d);
            var inShape = plan.ValueShapes[node.Inputs[0]]!;
            macs += node.OpType switch
            {
                "Gemm" => Elements(node.Outputs[0]) * (node.Attributes.Int("transA", 0) != 0 ? inShape[0] : inShape[1]),
                "MatMul" => Elements(node.Outputs[0]) * inShape[^1],
                "Conv" => Elements(node.Outputs[0]) * plan.ValueShapes[node.Inputs[1]]![1..].Aggregate(1L, (p, d) => p * d),
                _ => 0,
            };
        }
        long n = graph.Inputs[wrt].Shape.Skip(1).Aggregate(1L, (p, d) => p * d);
        long m = of.Sum(o => plan.Elements(graph.OutputIds[o]));
        return (macs, n, m);
    }

    /// <summary>GFLOP/s of a large float32 matrix product on one thread, times the two cores.</summary>
    private static double GemmCeiling()
    {
        torch.set_num_threads(1);
        using var scope = torch.NewDisposeScope();
        var a = torch.randn(1024, 1024);
        var b = torch.randn(1024, 1024);
        for (int i = 0; i < 3; i++) a.mm(b);
        var best = double.MaxValue;
        // Best of many: one product takes ~6 ms, and a stray wake-up of the idle server's threads can take a core.
        for (int i = 0; i < 50; i++)
        {
            long start = Stopwatch.GetTimestamp();
            a.mm(b);
            best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        return 2 * (2.0 * 1024 * 1024 * 1024 / best / 1e9);
    }

    private static Dictionary<(string, int), PeerBest> RunPeer(string root, string[] models, int[] batches, double seconds, string threadCounts)
    {
        var best = new Dictionary<(string, int), PeerBest>();
        string[] arguments = ["--models", string.Join(",", models), "--batch", string.Join(",", batches),
            "--seconds", seconds.ToString(CultureInfo.InvariantCulture), "--threads", threadCounts, "--ops", "jacfwd,jacrev,vjp"];
        foreach (var e in global::Peer.Lines(root, "peer_functorch.py", arguments, reuseLargeBlocks: true))
        {
            var key = (e.GetProperty("model").GetString()!, e.GetProperty("batch").GetInt32());
            var current = best.GetValueOrDefault(key) ?? new PeerBest(null, "", null, "");
            string op = e.GetProperty("op").GetString()!;
            string threads = e.TryGetProperty("threads", out var t) && t.ValueKind == JsonValueKind.Number ? $"{t.GetInt32()}t" : "";
            if (op == "best" && e.TryGetProperty("jacobians_per_s", out var j) && j.ValueKind == JsonValueKind.Number)
                current = current with { Jacobians = j.GetDouble(), Config = $"{e.GetProperty("mode").GetString()} {threads}" };
            if (op == "vjp" && e.TryGetProperty("samples_per_s", out var v) && v.ValueKind == JsonValueKind.Number && v.GetDouble() > (current.Vjp ?? 0))
                current = current with { Vjp = v.GetDouble(), VjpConfig = threads };
            best[key] = current;
        }
        return best;
    }

    private static string Fmt(Served s) => $"{Fmt(s.Rate)} ({s.Callers}c)";

    private static string Fmt(double v) =>
        v >= 1000 ? (v / 1000).ToString("F1", CultureInfo.InvariantCulture) + "k" : v.ToString("F0", CultureInfo.InvariantCulture);
}
