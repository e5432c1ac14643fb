using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Google.Protobuf;
using JacService.Core.Models;
using JacService.Core.Onnx;
using JacService.Protos.V1;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TorchSharp;

// Usage: dotnet run -c Release --project bench/JacService.Bench -- [--seconds 3] [--batch 1,16,256] [--models a,b] [--no-peer] [-- server args]
var options = BenchOptions.Parse(args);
// What the server does at start (Engine:ReuseLargeAllocations), so in-process numbers match served ones.
if (!args.Contains("--fresh-mappings")) JacService.Core.Models.NativeHeap.KeepLargeBlocks();
// What the server does at start (Engine:MklIgnoreCpuVendor); --mkl-by-vendor leaves MKL's own choice, for comparison.
string mklNote = args.Contains("--mkl-by-vendor") ? "left to MKL (--mkl-by-vendor)" : JacService.Core.Models.MklDispatch.IgnoreCpuVendor().ToString();
string? Flag(string name) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault();
// ONNX Runtime's errors only, as the server logs them by default: unrouted, its sessions write a warning to stderr on every
// run of a model whose declared output rank differs from what it computes (scripted_rnn: a million lines, 230 MB, per run).
OnnxRuntimeLog.Route((_, message, _) => Console.Error.WriteLine($"onnxruntime: {message}"), OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR);
// --root: the checkout, where the benchmark runs from a published folder outside it (the GPU device check).
var root = Flag("--root") ?? BenchOptions.FindRoot();
// --batching and --telemetry start fresh servers; tiered JIT keeps a core busy for several seconds after a start, so
// a short warm-up measures compilation, not steady-state serving (docs/benchmarks.md, "The first 10 s after a start").
double warmup = double.Parse(Flag("--warmup") ?? "15", CultureInfo.InvariantCulture);

if (args.Contains("--gemm"))
{
    // Usage: ... -- --gemm [--mkl-by-vendor]: one thread's float32 products, ours beside the peer's OpenBLAS.
    JacService.Bench.GemmBench.Run(root, mklNote);
    return 0;
}
if (args.Contains("--engine"))
{
    // Usage: ... -- --engine [--models a,b] [--batch 1,256] [--seconds 3]
    JacService.Bench.EngineBench.Run(root, options.Models, options.Batches, options.Seconds);
    return 0;
}
if (args.Contains("--gpu-phases"))
{
    // Usage: ... -- --gpu-phases [--device cuda:0] [--models a,b] [--batch 1,256] [--seconds 1]: where a Jacobian batch's
    // time goes on the device (the GPU device check runs it; on the CPU the same table without replays).
    JacService.Bench.GpuPhasesProbe.Run(root, Flag("--device") ?? "cuda:0", options.Models ?? ["mlp_tanh", "wide_classifier", "small_cnn"],
        options.Batches, options.Seconds);
    return 0;
}
if (args.Contains("--pool-probe"))
{
    // Usage: ... -- --pool-probe: libtorch's pooling kernels beside TiledPool on small_cnn's first pool.
    JacService.Bench.PoolProbe.Run();
    return 0;
}
if (args.Contains("--mask-probe"))
{
    // Usage: ... -- --mask-probe: piecewise activations' derivatives with bool masks and without.
    JacService.Bench.MaskProbe.Run();
    return 0;
}
if (args.Contains("--conv-probe"))
{
    // Usage: ... -- --conv-probe: a convolution's transpose by libtorch's kernels and by a matrix product and fold.
    JacService.Bench.ConvProbe.Run();
    return 0;
}

if (args.Contains("--cold-probe"))
{
    // Usage: ... -- --cold-probe [--models a,b] [--batch 256] [--calls 400] [--kinds vjp,jacobian] [--hot-only] [--no-rewrites]
    JacService.Bench.ColdProbe.Run(root, options.Models ?? ["relu_classifier", "layernorm_gelu"], options.Batches[0],
        int.Parse(Flag("--calls") ?? "400"), (Flag("--kinds") ?? "vjp,jacobian").Split(','), args.Contains("--hot-only"),
        rewrite: !args.Contains("--no-rewrites"));
    return 0;
}
if (args.Contains("--version-memory"))
{
    // Usage: ... -- --version-memory --model PATH [--versions 3] [--batch 1,16] [--calibrate]: what a version holds once it served every kind of call.
    JacService.Bench.VersionMemoryProbe.Run(Flag("--model")!, int.Parse(Flag("--versions") ?? "3"), options.Batches, args.Contains("--calibrate"));
    return 0;
}
if (args.Contains("--compiled-probe"))
{
    // Usage: ... -- --compiled-probe [--batch 1,16,256] [--seconds 3]: mlp_tanh's forward as one TorchScript function (issue 13).
    JacService.Bench.CompiledProbe.Run(root, options.Batches, options.Seconds);
    return 0;
}
if (args.Contains("--second-order-engine"))
{
    // Usage: ... -- --second-order-engine [--models pinn,mlp_tanh] [--batch 1,16,256] [--seconds 3]
    JacService.Bench.SecondOrderBench.RunEngine(root, options.Models ?? ["pinn", "mlp_tanh"], options.Batches, options.Seconds);
    return 0;
}
if (args.Contains("--batching"))
{
    // Usage: ... -- --batching [--concurrency 1,4,16,64,256] [--warmup 15] [--seconds 5] [-- server args]
    var levels = (Flag("--concurrency") ?? "1,4,16,64,256").Split(',').Select(int.Parse).ToArray();
    var points = await JacService.Bench.BatchingBench.RunAsync(root, "mlp_tanh", levels, warmup, options.Seconds, options.ServerArgs);
    Console.WriteLine("Single-sample Jacobian requests for mlp_tanh (32 -> 256 -> 256 -> 16), N concurrent callers");
    Console.WriteLine();
    Console.WriteLine(JacService.Bench.BatchingBench.Header);
    points.ForEach(p => Console.WriteLine(JacService.Bench.BatchingBench.Row(p)));
    return 0;
}
if (args.Contains("--telemetry"))
{
    // Usage: ... -- --telemetry [--modes off,on] [--warmup 15] [--concurrency 64] [--seconds 5] [--rounds 3] [-- server args]
    int concurrency = int.Parse(Flag("--concurrency") ?? "64");
    int rounds = int.Parse(Flag("--rounds") ?? "3");
    var modes = (Flag("--modes") ?? "off,on").Split(',');
    var (points, summary) = await JacService.Bench.TelemetryBench.RunAsync(root, "mlp_tanh", modes, concurrency, rounds, warmup, options.Seconds, options.ServerArgs);
    Console.WriteLine($"Single-sample Jacobian requests for mlp_tanh, {concurrency} concurrent callers, telemetry off and on in alternating rounds");
    Console.WriteLine();
    Console.WriteLine(JacService.Bench.BatchingBench.Header.Replace("| batching |", "| telemetry |"));
    points.ForEach(p => Console.WriteLine(JacService.Bench.BatchingBench.Row(p)));
    Console.WriteLine();
    Console.WriteLine(summary);
    return 0;
}
if (args.Contains("--soak"))
{
    // Usage: ... -- --soak [--rps N | --fraction 0.8 --capacity-callers 64 --capacity-seconds 30] [--seconds 1800] [--sample 10]
    //               [--warmup 15] [--csv FILE] [-- server args]: bench/soak.sh runs it.
    double Number(string name, string fallback) => double.Parse(Flag(name) ?? fallback, CultureInfo.InvariantCulture);
    Console.Write(await JacService.Bench.SoakBench.RunAsync(root, Number("--rps", "0"), Number("--fraction", "0.8"), (int)Number("--capacity-callers", "64"),
        Number("--capacity-seconds", "30"), Number("--seconds", "1800"), Number("--sample", "10"), warmup, Flag("--csv"), options.ServerArgs));
    return 0;
}
if (args.Contains("--crash"))
{
    // Usage: ... -- --crash --container NAME --port P [--rounds 3] [--rps 50] [--before 10] [--after 10] [--timeout 60]: bench/crash_recovery.sh runs it.
    double Number(string name, string fallback) => double.Parse(Flag(name) ?? fallback, CultureInfo.InvariantCulture);
    Console.Write(await JacService.Bench.CrashBench.RunAsync(Flag("--container")!, (int)Number("--port", "0"), (int)Number("--rounds", "3"),
        Number("--rps", "50"), Number("--before", "10"), Number("--after", "10"), Number("--timeout", "60")));
    return 0;
}
if (args.Contains("--takeover"))
{
    // Usage: ... -- --takeover [--rounds 3] [--concurrency 16] [--warmup 15] [--before 10] [--after 10] [--poll 0.2] [--max-load 1.5] [-- server args]
    string Arg(string name, string fallback) => Flag(name) ?? fallback;
    double Number(string name, string fallback) => double.Parse(Arg(name, fallback), CultureInfo.InvariantCulture);
    Console.Write(await JacService.Bench.TakeoverBench.RunAsync(root, int.Parse(Arg("--rounds", "3")), int.Parse(Arg("--concurrency", "16")), warmup,
        Number("--before", "10"), Number("--after", "10"), Number("--poll", "0.2"), Number("--max-load", "1.5"), options.ServerArgs));
    return 0;
}
var modelsDir = Path.Combine(root, "tests", "fixtures", "models");
var models = options.Models ?? Directory.GetDirectories(modelsDir).Select(Path.GetFileName).Order().ToArray()!;

Console.Error.WriteLine($"JacService benchmark: models {string.Join(",", models)}, batches {string.Join(",", options.Batches)}, {options.Seconds}s per point");
using var server = ServerUnderTest.Start(root, modelsDir, options.ServerArgs);
using var channel = JacService.Client.JacServiceChannel.Create($"http://127.0.0.1:{server.Port}", maxMessageMiB: 512);
var client = new JacobianService.JacobianServiceClient(channel);
await server.WaitUntilReady(client);
if (args.Contains("--second-order"))
{
    // Usage: ... -- --second-order [--models pinn,mlp_tanh] [--batch 1,16,256] [--seconds 3] [--no-peer] [-- --Batching:MaxBatchSize=256]
    await JacService.Bench.SecondOrderBench.RunServedAsync(root, options.Models ?? ["pinn", "mlp_tanh"], options.Batches, options.Seconds, warmup,
        client, options.NoPeer);
    return 0;
}
if (args.Contains("--oip"))
{
    // Usage: ... -- --oip [--models mlp_tanh,small_cnn] [--batch 1,256] [--seconds 3] [--rounds 3] [--warmup 15]: ModelInfer, over gRPC and over
    // HTTP/REST, beside Predict and BatchJacobian.
    JacService.Bench.OipBench.Run(options.Models ?? ["mlp_tanh"], options.Batches, options.Seconds, int.Parse(Flag("--rounds") ?? "3"),
        warmup, channel, server);
    return 0;
}
if (args.Contains("--derivatives"))
{
    // Usage: ... -- --derivatives [--models a,b] [--batch 1,256] [--seconds 3] [--callers 2,4,8] [--peer-threads 1,2] [--no-peer]:
    // FORWARD/REVERSE/AUTO and Vjp, each the best over the numbers of concurrent callers, beside PyTorch's best over its
    // thread counts.
    var callers = (Flag("--callers") ?? "2,4,8").Split(',').Select(int.Parse).ToArray();
    await JacService.Bench.ModesBench.RunAsync(root, models!, options.Batches, options.Seconds, warmup, callers, client, options.NoPeer,
        Flag("--peer-threads") ?? "1,2");
    return 0;
}

// --predict-only: the Predict table alone (no Jacobians, no peer).
bool predictOnly = args.Contains("--predict-only");
// The peer runs with one and with two threads; the table keeps its better number for each point.
var peer = options.NoPeer || predictOnly ? [] : new[] { 1, 2 }.SelectMany(threads => Peer.RunFunctorch(root, models, options, threads))
    .GroupBy(p => (p.Model, p.Batch)).Select(g => g.MaxBy(p => p.JacobiansPerSecond ?? -1)!).ToList();
var rows = new List<string>();
var predictRows = new List<string>();
torch.set_num_threads(1);

foreach (var name in models)
{
    var bytes = File.ReadAllBytes(Path.Combine(modelsDir, name!, "1", "model.onnx"));
    using var model = ModelVersion.Load(name!, 1, bytes, new EngineLimits());
    using var ort = new InferenceSession(bytes, new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1 });
    int wrt = model.ResolveWrt(model.Inputs.First(i => i.ElementType.IsFloat()).Name);
    var of = model.ResolveOf([]);

    foreach (var batch in options.Batches)
    {
        var inputs = model.Inputs.Select(i => Inputs.Random(i.Shape, batch)).ToArray();
        var request = new BatchJacobianRequest { Model = name, Wrt = model.Inputs[wrt].Name };
        for (int i = 0; i < inputs.Length; i++) request.Inputs[model.Inputs[i].Name] = Inputs.ToProto(inputs[i]);

        if (!predictOnly)
        {
            // In-process: the engine alone on this thread, one intra-op thread.
            double inProcess = Measure.PerSecond(batch, options.Seconds, () =>
            {
                using var scope = torch.NewDisposeScope();
                using var mode = torch.inference_mode();
                model.Jacobian(inputs, wrt, of);
            });
            double grpc1 = Measure.PerSecond(batch, options.Seconds, () => client.BatchJacobian(request));
            double grpc2 = Measure.PerSecondConcurrent(batch, options.Seconds, 2, () => client.BatchJacobian(request));

            var p = peer.FirstOrDefault(x => x.Model == name && x.Batch == batch);
            string peerText = p is null ? "n/a" : p.JacobiansPerSecond is { } v ? $"{Fmt(v)} ({p.Threads}t)" : "skipped (" + p.Note + ")";
            string ratio = p?.JacobiansPerSecond is { } pv ? $"{Math.Max(grpc1, grpc2) / pv:F2}x" : "n/a";
            rows.Add($"| {name} | {batch} | {Fmt(inProcess)} | {Fmt(grpc1)} | {Fmt(grpc2)} | {peerText} | {ratio} |");
            Console.Error.WriteLine(rows[^1]);
        }

        // Predict beside ONNX Runtime.
        var predict = new PredictRequest { Model = name };
        foreach (var (k, t) in request.Inputs) predict.Inputs[k] = t;
        double predictGrpc = Measure.PerSecondConcurrent(batch, options.Seconds, 2, () => client.Predict(predict));
        // The result arrays go back to the pool after each call, as the server returns them once the answer is written;
        // kept, every call took fresh large arrays and the garbage collector's time counted against Predict (conv_decoder
        // at 256 rows read 0.69-0.79x ONNX Runtime alone that way, 0.97-1.02x with them returned).
        void PredictOnce()
        {
            using var scope = torch.NewDisposeScope();
            using var mode = torch.inference_mode();
            FloatArrayPool.Shared.ReturnAll(model.Predict(inputs).Outputs.Values.Select(o => o.Data));
        }
        var ortInputs = model.Inputs.Select((sig, i) => NamedOnnxValue.CreateFromTensor(sig.Name,
            new DenseTensor<float>(inputs[i].Data, inputs[i].Shape.Select(d => (int)d).ToArray()))).ToList();
        // Where ONNX Runtime serves Predict the two columns measure one library: in turn, twice each, the better half of
        // each, so that neither alone takes the slow first window after the gRPC load (5-10 % low at small batches).
        double predictInProcess = 0, ortRate = 0;
        for (int turn = 0; turn < 2; turn++)
        {
            predictInProcess = Math.Max(predictInProcess, Measure.PerSecond(batch, options.Seconds / 2, PredictOnce));
            ortRate = Math.Max(ortRate, Measure.PerSecond(batch, options.Seconds / 2, () => { using var r = ort.Run(ortInputs); }));
        }
        double predictEngine = Measure.PerSecond(batch, options.Seconds, () =>
        {
            using var scope = torch.NewDisposeScope();
            using var mode = torch.inference_mode();
            FloatArrayPool.Shared.ReturnAll(model.PredictInEngine(inputs).Outputs.Values.Select(o => o.Data));
        });
        // What served this batch size: ONNX Runtime or the engine, whichever ran its first batch faster.
        string served = model.PredictChoices.FirstOrDefault(c => c.Batch == batch)?.Runtime ?? model.PredictRuntime;
        predictRows.Add($"| {name} | {batch} | {Fmt(predictInProcess)} ({served}) | {Fmt(predictEngine)} | {Fmt(predictGrpc)} | {Fmt(ortRate)} | {predictInProcess / ortRate:F2}x | {predictEngine / ortRate:F2}x |");
        Console.Error.WriteLine(predictRows[^1]);
    }
}

Console.WriteLine($"BatchJacobian, Jacobians/s (median of timed windows); machine: {Environment.ProcessorCount} vCPUs; functorch: best of 1 and 2 threads (shown as 1t/2t)");
Console.WriteLine();
Console.WriteLine("| model | batch | JacService in-process (1 thread) | JacService gRPC, 1 client | JacService gRPC, 2 clients | functorch vmap(jacfwd) | gRPC best / functorch |");
Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|");
rows.ForEach(Console.WriteLine);
Console.WriteLine();
Console.WriteLine("Predict, samples/s");
Console.WriteLine();
Console.WriteLine("| model | batch | JacService Predict in-process (1 thread) | engine's interpreter | JacService gRPC, 2 clients | ONNX Runtime alone (1 thread) | Predict / ORT | interpreter / ORT |");
Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|");
predictRows.ForEach(Console.WriteLine);
return 0;

static string Fmt(double v) => v >= 1000 ? (v / 1000).ToString("F1", CultureInfo.InvariantCulture) + "k" : v.ToString("F0", CultureInfo.InvariantCulture);

sealed record BenchOptions(double Seconds, int[] Batches, string[]? Models, bool NoPeer, string[] ServerArgs)
{
    public static BenchOptions Parse(string[] args)
    {
        string? Value(string flag) => args.SkipWhile(a => a != flag).Skip(1).FirstOrDefault();
        return new BenchOptions(
            double.Parse(Value("--seconds") ?? "3", CultureInfo.InvariantCulture),
            (Value("--batch") ?? "1,16,256").Split(',').Select(int.Parse).ToArray(),
            Value("--models")?.Split(','),
            args.Contains("--no-peer"),
            args.SkipWhile(a => a != "--").Skip(1).ToArray());
    }

    public static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "JacService.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("JacService.sln not found");
    }
}

public static class Inputs
{
    public static HostTensor Random(long[] signature, int batch)
    {
        var shape = signature.Select((d, i) => i == 0 ? batch : d).ToArray();
        var rng = new Random(42);
        long n = shape.Aggregate(1L, (p, d) => p * d);
        return new HostTensor(shape, Enumerable.Range(0, (int)n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray());
    }

    public static JacService.Protos.V1.Tensor ToProto(HostTensor h) => JacService.Client.Tensors.Create(h.Data, h.Shape);
}

public static class Measure
{
    /// <summary>Items per second: median over timed windows after one warm-up call.</summary>
    public static double PerSecond(int items, double seconds, Action call) => PerSecondConcurrent(items, seconds, 1, call);

    public static double PerSecondConcurrent(int items, double seconds, int callers, Action call)
    {
        call(); // warm-up: plan building, JIT
        return MedianWindow(items, seconds, windowEnd =>
        {
            int calls = 0;
            Parallel.For(0, callers, new ParallelOptions { MaxDegreeOfParallelism = callers }, _ =>
            {
                do
                {
                    call();
                    Interlocked.Increment(ref calls);
                } while (Stopwatch.GetTimestamp() < windowEnd);
            });
            return Task.FromResult(calls);
        }).GetAwaiter().GetResult();
    }

    /// <summary>
    /// Items per second from <paramref name="callers"/> asynchronous closed-loop callers (each sends its next call when
    /// its last one answers, as jac load does): median over timed windows after one warm-up call. Callers on blocked
    /// pool threads would wait for the thread pool to grow on a 2-core machine, so these never block.
    /// </summary>
    public static async Task<double> PerSecondAsync(int items, double seconds, int callers, Func<Task> call)
    {
        await call();
        return await MedianWindow(items, seconds, async windowEnd =>
        {
            int calls = 0;
            await Task.WhenAll(Enumerable.Range(0, callers).Select(async _ =>
            {
                do
                {
                    await call();
                    Interlocked.Increment(ref calls);
                } while (Stopwatch.GetTimestamp() < windowEnd);
            }));
            return calls;
        });
    }

    /// <summary>The median over windows of a fifth of <paramref name="seconds"/> each, at least three, of items per second.</summary>
    private static async Task<double> MedianWindow(int items, double seconds, Func<long, Task<int>> callsUntil)
    {
        var windows = new List<double>();
        var end = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < end || windows.Count < 3)
        {
            var start = Stopwatch.GetTimestamp();
            int calls = await callsUntil(start + (long)(seconds / 5 * Stopwatch.Frequency));
            windows.Add(calls * (double)items / Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        windows.Sort();
        return windows[windows.Count / 2];
    }
}

sealed record PeerPoint(string Model, int Batch, double? JacobiansPerSecond, int Threads, string Note);

static class Peer
{
    /// <summary>
    /// Runs a peer script under Debian's PyTorch (OpenBLAS with its SkylakeX kernels) and yields its JSON lines, echoed to
    /// stderr. With <paramref name="reuseLargeBlocks"/> the peer gets from glibc's environment the large-block reuse
    /// the server sets itself (Engine:ReuseLargeAllocations): its best configuration.
    /// </summary>
    public static IEnumerable<JsonElement> Lines(string root, string script, IEnumerable<string> arguments, bool reuseLargeBlocks)
    {
        var start = new ProcessStartInfo(ServerCores.Python) { RedirectStandardOutput = true };
        start.ArgumentList.Add(Path.Combine(root, "bench", script));
        foreach (var a in arguments) start.ArgumentList.Add(a);
        start.Environment["OPENBLAS_CORETYPE"] = "SkylakeX";
        if (reuseLargeBlocks)
        {
            start.Environment["MALLOC_MMAP_THRESHOLD_"] = int.MaxValue.ToString(CultureInfo.InvariantCulture);
            start.Environment["MALLOC_TRIM_THRESHOLD_"] = int.MaxValue.ToString(CultureInfo.InvariantCulture);
            start.Environment["MALLOC_ARENA_MAX"] = "1";
        }
        using var process = Process.Start(ServerCores.Pinned(start, root))!;
        string? line;
        while ((line = process.StandardOutput.ReadLine()) is not null)
        {
            if (!line.StartsWith('{')) continue;
            Console.Error.WriteLine("peer: " + line);
            using var doc = JsonDocument.Parse(line);
            yield return doc.RootElement.Clone();
        }
        process.WaitForExit();
    }

    /// <summary>Runs Debian's PyTorch with OpenBLAS: functorch.vmap(functorch.jacfwd(f)) on the same models.</summary>
    public static List<PeerPoint> RunFunctorch(string root, IEnumerable<string?> models, BenchOptions options, int threads)
    {
        var start = new ProcessStartInfo("/usr/bin/python3")
        {
            ArgumentList =
            {
                Path.Combine(root, "bench", "peer_functorch.py"),
                "--models", string.Join(",", models), "--batch", string.Join(",", options.Batches),
                "--seconds", options.Seconds.ToString(CultureInfo.InvariantCulture), "--threads", threads.ToString(),
            },
            RedirectStandardOutput = true,
        };
        start.Environment["OPENBLAS_CORETYPE"] = "SkylakeX";
        using var process = Process.Start(start)!;
        var points = new List<PeerPoint>();
        string? line;
        while ((line = process.StandardOutput.ReadLine()) is not null)
        {
            if (!line.StartsWith('{')) continue;
            using var doc = JsonDocument.Parse(line);
            var e = doc.RootElement;
            double? rate = e.TryGetProperty("jacobians_per_s", out var r) && r.ValueKind == JsonValueKind.Number ? r.GetDouble() : null;
            points.Add(new PeerPoint(e.GetProperty("model").GetString()!, e.GetProperty("batch").GetInt32(), rate,
                e.TryGetProperty("threads", out var t) && t.ValueKind == JsonValueKind.Number ? t.GetInt32() : 0,
                e.TryGetProperty("skipped", out var s) ? s.ToString() : ""));
            Console.Error.WriteLine("peer: " + line);
        }
        process.WaitForExit();
        return points;
    }
}

sealed class ServerUnderTest : IDisposable
{
    private readonly Process _process;
    public int Port { get; }

    private ServerUnderTest(Process process, int port) => (_process, Port) = (process, port);

    public int MetricsPort { get; private init; }
    /// <summary>The Open Inference Protocol's HTTP/REST port (OpenInference:RestUrl).</summary>
    public int RestPort { get; private init; }
    public int ProcessId => _process.Id;

    /// <summary>CPU time the server process has used so far, all threads (including the JIT's and the GC's).</summary>
    public TimeSpan CpuTime
    {
        get { _process.Refresh(); return _process.TotalProcessorTime; }
    }

    public static ServerUnderTest Start(string root, string modelsDir, string[] extraArgs, IReadOnlyDictionary<string, string>? environment = null)
    {
        var tail = Path.GetRelativePath(Path.Combine(root, "bench", "JacService.Bench"), AppContext.BaseDirectory);
        var dll = Path.Combine(root, "src", "Server", tail, "JacService.Server.dll");
        // Published self-contained beside the server (scripts/device/pack.sh), where there is no dotnet to run a dll.
        var published = Path.Combine(AppContext.BaseDirectory, "JacService.Server");
        int port = FreePort(), metricsPort = FreePort(), restPort = FreePort();
        var start = File.Exists(dll) || !File.Exists(published)
            ? new ProcessStartInfo("dotnet") { ArgumentList = { dll } }
            : new ProcessStartInfo(published);
        start.UseShellExecute = false;
        foreach (var a in (string[])["--urls", $"http://127.0.0.1:{port}", $"--Models:Root={modelsDir}", "--Logging:LogLevel:Default=Warning",
                     $"--Telemetry:MetricsUrl=http://127.0.0.1:{metricsPort}", $"--OpenInference:RestUrl=http://127.0.0.1:{restPort}", .. extraArgs])
            start.ArgumentList.Add(a);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) start.Environment[name] = value;
        return new ServerUnderTest(Process.Start(ServerCores.Pinned(start, root))!, port) { MetricsPort = metricsPort, RestPort = restPort };
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async Task WaitUntilReady(JacobianService.JacobianServiceClient client)
    {
        for (int i = 0; i < 300; i++)
        {
            try
            {
                var list = await client.ListModelsAsync(new ListModelsRequest());
                if (list.Models.Count > 0 && list.Models.All(m => m.State != "LOADING")) return;
            }
            catch (Grpc.Core.RpcException) { }
            await Task.Delay(200);
        }
        throw new TimeoutException("server did not load its models");
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.Dispose();
    }
}
