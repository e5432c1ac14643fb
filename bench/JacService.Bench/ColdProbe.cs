using System.Diagnostics;
using System.Runtime.InteropServices;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace JacService.Bench;

/// <summary>
/// What one engine call costs its thread when the thread is not kept busy: back to back ("hot", as the in-process
/// benchmarks run), after a 1 ms sleep (an executor waiting for its next batch), and after sweeping 2 MB or 64 MB of
/// other memory (what the RPC's parsing, copies and allocations do to the caches between two batches). Thread CPU time
/// per call, median over the calls (docs/benchmarks.md, "Callers, and executors that sleep").
/// </summary>
public static class ColdProbe
{
    // .NET has no cheap per-thread CPU clock (ProcessThread.TotalProcessorTime reads /proc), so ask libc for it.
    private const int ClockThreadCpuTimeId = 3; // CLOCK_THREAD_CPUTIME_ID on Linux

    [StructLayout(LayoutKind.Sequential)] private struct Timespec { public long Sec; public long Nsec; }

    [DllImport("libc")] private static extern int clock_gettime(int clock, out Timespec ts);

    private static double CpuUs()
    {
        clock_gettime(ClockThreadCpuTimeId, out var t);
        return t.Sec * 1e6 + t.Nsec / 1e3;
    }

    public static void Run(string root, string[] models, int batch, int calls, string[] kinds, bool hotOnly, bool rewrite)
    {
        torch.set_num_threads(1);
        var dir = Path.Combine(root, "tests", "fixtures", "models");
        var junk = new byte[64 << 20];
        foreach (var name in models)
        {
            var bytes = File.ReadAllBytes(Path.Combine(dir, name, "1", "model.onnx"));
            using var model = ModelVersion.Load(name, 1, bytes, new EngineLimits { RewriteGraph = rewrite });
            int wrt = model.ResolveWrt(model.Inputs.First(i => i.ElementType.IsFloat()).Name);
            var of = model.ResolveOf([]);
            var inputs = model.Inputs.Select(i => Inputs.Random(i.Shape, batch)).ToArray();
            var cot = of.Select(o => Inputs.Random([-1, .. model.OutputSampleShape(inputs, o)], batch)).ToArray();
            foreach (var (label, between) in new (string, Action)[]
            {
                ("hot", () => { }),
                ("sleep 1 ms", () => Thread.Sleep(1)),
                ("pollute 2 MB", () => Touch(junk, 2 << 20)),
                ("pollute 64 MB", () => Touch(junk, junk.Length)),
                ("sleep + pollute 2 MB", () => { Thread.Sleep(1); Touch(junk, 2 << 20); }),
            }.Take(hotOnly ? 1 : 5))
            {
                foreach (var kind in kinds)
                {
                    var cpu = new List<double>(); var wall = new List<double>();
                    for (int i = 0; i < calls; i++)
                    {
                        between();
                        double c0 = CpuUs(); long w0 = Stopwatch.GetTimestamp();
                        using (NewDisposeScope())
                        using (inference_mode())
                        {
                            if (kind == "vjp") model.Vjp(inputs, wrt, of, cot);
                            else model.Jacobian(inputs, wrt, of, DerivativeMode.Auto);
                        }
                        cpu.Add(CpuUs() - c0); wall.Add(Stopwatch.GetElapsedTime(w0).TotalMicroseconds);
                    }
                    cpu.Sort(); wall.Sort();
                    Console.WriteLine($"{name} b{batch} {kind,-8} {label,-22} cpu p50 {cpu[calls / 2],8:F0} us  wall p50 {wall[calls / 2],8:F0} us  cpu p10 {cpu[calls / 10],8:F0}");
                }
            }
        }
    }

    /// <summary>Writes a byte of every cache line, so each line is fetched and dirtied.</summary>
    private static void Touch(byte[] junk, int n)
    {
        var s = junk.AsSpan(0, n);
        for (int i = 0; i < s.Length; i += 64) s[i]++;
    }
}
