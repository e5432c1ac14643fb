using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using JacService.Core.Models;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TorchSharp;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace JacService.Bench;

/// <summary>
/// Issue 13's feasibility question for compiled Predict plans: does one TorchScript function per plan (torch.jit.compile,
/// run inside libtorch with no .NET call per op) beat the interpreter, and by enough to reach ONNX Runtime? Times
/// mlp_tanh's forward (Gemm, Tanh, Gemm, Tanh, Gemm) every way it can run here, beside the kernels it is made of.
/// </summary>
public static class CompiledProbe
{
    // TorchSharp exposes none of the TorchScript executor's switches; libtorch exports them as C++ functions. The two
    // getters return std::atomic<bool>&, which on x86-64 is one byte that can be written.
    [DllImport("libtorch_cpu.so", EntryPoint = "_ZN5torch3jit16getProfilingModeEv")]
    private static extern IntPtr ProfilingMode();

    [DllImport("libtorch_cpu.so", EntryPoint = "_ZN5torch3jit15getExecutorModeEv")]
    private static extern IntPtr ExecutorMode();

    [DllImport("libtorch_cpu.so", EntryPoint = "_ZN5torch3jit24setGraphExecutorOptimizeEb")]
    private static extern void SetGraphExecutorOptimize([MarshalAs(UnmanagedType.U1)] bool on);

    private const string Script = """
        def with_args(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, w3: Tensor, b3: Tensor):
            v1 = torch.linear(x, w1, b1)
            v2 = torch.tanh(v1)
            v3 = torch.linear(v2, w2, b2)
            v4 = torch.tanh(v3)
            return torch.linear(v4, w3, b3)

        def with_list(x: Tensor, c: List[Tensor]):
            v1 = torch.linear(x, c[0], c[1])
            v2 = torch.tanh(v1)
            v3 = torch.linear(v2, c[2], c[3])
            v4 = torch.tanh(v3)
            return torch.linear(v4, c[4], c[5])

        def with_addmm(x: Tensor, c: List[Tensor]):
            v1 = torch.addmm(c[1], x, c[0])
            v2 = torch.tanh(v1)
            v3 = torch.addmm(c[3], v2, c[2])
            v4 = torch.tanh(v3)
            return torch.addmm(c[5], v4, c[4])

        def identity(x: Tensor):
            return x
        """;

    public static void Run(string root, int[] batches, double seconds)
    {
        torch.set_num_threads(1);
        var bytes = File.ReadAllBytes(Path.Combine(root, "tests", "fixtures", "models", "mlp_tanh", "1", "model.onnx"));
        using var model = ModelVersion.Load("mlp_tanh", 1, bytes, new EngineLimits());
        using var ort = new InferenceSession(bytes, new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1 });
        var byName = model.Graph.Initializers.ToDictionary(p => model.Graph.ValueNames[p.Key], p => p.Value);
        var w = new[] { "l1.weight", "l1.bias", "l2.weight", "l2.bias", "l3.weight", "l3.bias" }.Select(n => byName[n]).ToArray();
        var transposed = new[] { w[0].t().contiguous(), w[1], w[2].t().contiguous(), w[3], w[4].t().contiguous(), w[5] };

        var watch = Stopwatch.StartNew();
        var unit = torch.jit.compile(Script + "\n");
        double compileMs = watch.Elapsed.TotalMilliseconds;

        var rows = new List<string>();
        var firstCalls = new List<string>();
        var kernelRows = new List<string>();
        foreach (var batch in batches)
        {
            var host = Inputs.Random([-1, 32], batch);
            var x = tensor(host.Data, host.Shape);
            if (batch == batches[0]) firstCalls.Add(FirstCalls(unit, x, w));
            CheckSame(model, unit, x, w, transposed);

            double Rate(Action call) => Measure.PerSecond(batch, seconds, () =>
            {
                using var scope = NewDisposeScope();
                using var inference = inference_mode();
                call();
            });
            var ortInputs = new List<NamedOnnxValue> { NamedOnnxValue.CreateFromTensor("x", new DenseTensor<float>(host.Data, [batch, 32])) };
            double ortRate = Measure.PerSecond(batch, seconds, () => { using var r = ort.Run(ortInputs); });
            double predict = Rate(() => model.Predict([host]));
            double forward = Rate(() => model.Forward([x]));
            double eager = Rate(() =>
            {
                var v = nn.functional.linear(x, w[0], w[1]).tanh_();
                v = nn.functional.linear(v, w[2], w[3]).tanh_();
                nn.functional.linear(v, w[4], w[5]);
            });
            double args = Rate(() => unit.invoke("with_args", x, w[0], w[1], w[2], w[3], w[4], w[5]));
            double list = Rate(() => unit.invoke("with_list", x, w));
            double preTransposed = Rate(() => unit.invoke("with_addmm", x, transposed));
            double identity = Rate(() => unit.invoke("identity", x));
            double best = Math.Max(args, Math.Max(list, preTransposed));
            rows.Add($"| {batch} | {Fmt(ortRate)} | {Fmt(predict)} | {Fmt(forward)} | {Fmt(eager)} | {Fmt(args)} | {Fmt(list)} | {Fmt(preTransposed)} | " +
                $"{Us(batch, identity):F1} | {best / ortRate:F2}x | {best / forward:F2}x | {best / eager:F2}x |");
            Console.Error.WriteLine(rows[^1]);

            var h = rand(batch, 256);
            var h32 = rand(batch, 32);
            double[] kernels =
            [
                Rate(() => addmm(w[1], h32, transposed[0], 1, 1)),
                Rate(() => addmm(w[3], h, transposed[2], 1, 1)),
                Rate(() => addmm(w[5], h, transposed[4], 1, 1)),
                Rate(() => h.tanh()),
                Rate(() => (h * 2).sigmoid_().mul_(2).sub_(1)),
            ];
            double floor = Us(batch, kernels[0]) + Us(batch, kernels[1]) + Us(batch, kernels[2]) + 2 * Us(batch, kernels[3]);
            kernelRows.Add($"| {batch} | {string.Join(" | ", kernels.Select(k => Us(batch, k).ToString("F1", CultureInfo.InvariantCulture)))} | " +
                $"{floor:F1} | {Us(batch, ortRate):F1} | {Us(batch, best):F1} |");
            Console.Error.WriteLine(kernelRows[^1]);
        }

        // The executor's switches are read when a function first runs: each setting gets a freshly compiled unit.
        var modes = new List<string>();
        foreach (var (label, set) in new (string, Action)[]
        {
            ("profiling executor (libtorch default)", () => { }),
            ("profiling off", () => Marshal.WriteByte(ProfilingMode(), 0)),
            ("legacy executor (executor mode off)", () => Marshal.WriteByte(ExecutorMode(), 0)),
            ("legacy executor, graph optimisation off", () => SetGraphExecutorOptimize(false)),
        })
        {
            set();
            var fresh = torch.jit.compile(Script + "\n");
            var cells = batches.Select(batch =>
            {
                var host = Inputs.Random([-1, 32], batch);
                var x = tensor(host.Data, host.Shape);
                return Fmt(Measure.PerSecond(batch, seconds, () =>
                {
                    using var scope = NewDisposeScope();
                    using var inference = inference_mode();
                    fresh.invoke("with_list", x, w);
                }));
            });
            modes.Add($"| {label} | {string.Join(" | ", cells)} |");
            Console.Error.WriteLine(modes[^1]);
        }

        Console.WriteLine($"mlp_tanh (32 -> 256 -> 256 -> 16, tanh) forward, samples/s, 1 thread (median of timed windows); compiling the unit took {compileMs:F1} ms");
        Console.WriteLine();
        Console.WriteLine("| batch | ONNX Runtime | interpreter Predict (arrays in/out) | interpreter Forward (tensors) | eager TorchSharp, 5 calls | TorchScript, weights as arguments | TorchScript, List[Tensor] | TorchScript, addmm on pre-transposed weights | invoke of identity, µs | best compiled / ORT | best compiled / interpreter Forward | best compiled / eager |");
        Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        rows.ForEach(Console.WriteLine);
        Console.WriteLine();
        Console.WriteLine("First calls of a fresh unit (inference mode), µs:");
        firstCalls.ForEach(Console.WriteLine);
        Console.WriteLine();
        Console.WriteLine("The kernels the forward is made of, µs per call (eager TorchSharp, 1 thread):");
        Console.WriteLine();
        Console.WriteLine("| batch | addmm [B,32]x[32,256] | addmm [B,256]x[256,256] | addmm [B,256]x[256,16] | tanh [B,256] | tanh as 2 sigmoid(2x) - 1 | 3 addmm + 2 tanh | ONNX Runtime, whole model | best compiled, whole model |");
        Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        kernelRows.ForEach(Console.WriteLine);
        Console.WriteLine();
        Console.WriteLine("TorchScript executor settings (List[Tensor] variant), samples/s; settings accumulate downwards:");
        Console.WriteLine();
        Console.WriteLine($"| setting | {string.Join(" | ", batches.Select(b => $"batch {b}"))} |");
        Console.WriteLine($"|---|{string.Concat(batches.Select(_ => "---:|"))}");
        modes.ForEach(Console.WriteLine);
        Console.WriteLine();
        Console.WriteLine(LeakCheck());
    }

    private static string FirstCalls(jit.CompilationUnit unit, Tensor x, Tensor[] w)
    {
        var fresh = torch.jit.compile(Script + "\n");
        var times = new List<string>();
        for (int i = 0; i < 4; i++)
        {
            using var scope = NewDisposeScope();
            using var inference = inference_mode();
            var start = Stopwatch.GetTimestamp();
            fresh.invoke("with_list", x, w);
            times.Add($"call {i + 1}: {Stopwatch.GetElapsedTime(start).TotalMicroseconds:F0}");
        }
        return string.Join(", ", times);
    }

    private static void CheckSame(ModelVersion model, jit.CompilationUnit unit, Tensor x, Tensor[] w, Tensor[] transposed)
    {
        using var scope = NewDisposeScope();
        using var inference = inference_mode();
        var reference = model.Forward([x])[0];
        foreach (var y in new[] { unit.invoke<Tensor>("with_list", x, w), unit.invoke<Tensor>("with_addmm", x, transposed) })
        {
            double error = (y - reference).abs().max().item<float>();
            if (error > 1e-5) throw new InvalidOperationException($"compiled forward differs from the interpreter by {error:E2}");
        }
    }

    /// <summary>Native memory a compiled unit keeps after Dispose.</summary>
    private static string LeakCheck()
    {
        const int units = 1000;
        static long Rss()
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            return Process.GetCurrentProcess().WorkingSet64;
        }
        long before = Rss();
        for (int i = 0; i < units; i++)
            torch.jit.compile($"def f{i}(x: Tensor, c: List[Tensor]):\n    return torch.addmm(c[1], torch.tanh(x), c[0])\n").Dispose();
        return $"{units} units compiled and disposed: resident memory grew by {(Rss() - before) / 1024.0 / units:F1} KiB per unit";
    }

    private static double Us(int batch, double samplesPerSecond) => batch / samplesPerSecond * 1e6;

    private static string Fmt(double v) => v >= 1000 ? (v / 1000).ToString("F1", CultureInfo.InvariantCulture) + "k" : v.ToString("F0", CultureInfo.InvariantCulture);
}
