using System.Globalization;
using System.Runtime.InteropServices;
using JacService.Core.Derivatives;
using JacService.Core.Graphs;
using JacService.Core.Models;
using JacService.Core.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace JacService.Bench;

/// <summary>
/// Where a served Jacobian batch's time goes on a GPU, in-process on one thread: the whole batch as an executor runs it
/// (inputs up, the pass, results down into reused arrays), with graphs and without, and each part apart, waiting for
/// the GPU after each. Beside the parts the server uses today, the alternatives: inputs up through page-locked memory,
/// results down through a reused page-locked buffer or in one staged transfer (the server's way until the H200 run of
/// 2026-12-04 showed it the slowest, docs/gpu.md). It says which part of a batch to work on.
/// </summary>
public static class GpuPhasesProbe
{
    public static void Run(string root, string device, string[] models, int[] batches, double seconds)
    {
        bool gpu = device != ComputeDevices.Cpu;
        ComputeDevices.Use([device]);
        bool graphs = gpu && GraphLibrary.Availability is null;
        if (gpu) torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = false;
        Console.WriteLine($"Batch phases on {device}, one thread, µs per call (median of timed windows of {seconds} s in all); " +
            $"graphs: {(graphs ? "recorded" : "not available: " + (GraphLibrary.Availability?.Split(" (")[0] ?? "the device is the CPU"))}");
        Console.WriteLine();
        Console.WriteLine("| model | batch | mode | result MB | batch, graphs | batch, eager | up, pageable (now) | up, pinned | pass, eager | pass, replay | down, into the arrays (now) | down, pinned buffer | down, one staged transfer |");
        Console.WriteLine("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var name in models)
        {
            var bytes = File.ReadAllBytes(Path.Combine(root, "tests", "fixtures", "models", name, "1", "model.onnx"));
            var limits = new EngineLimits { Device = device, Devices = [device], CudaGraphs = graphs };
            using var graphed = ModelVersion.Load(name, 1, bytes, limits);
            using var eager = ModelVersion.Load(name, 1, bytes, limits with { CudaGraphs = false });
            int wrt = graphed.ResolveWrt(graphed.Inputs.First(i => i.ElementType.IsFloat()).Name);
            var of = graphed.ResolveOf([]);
            foreach (var batch in batches)
                Console.WriteLine(Row(name, graphed, eager, wrt, of, batch, seconds, gpu, graphs));
        }
    }

    private static string Row(string name, ModelVersion graphed, ModelVersion eager, int wrt, int[] of, int batch, double seconds, bool gpu, bool graphs)
    {
        var host = graphed.Inputs.Select(i => Inputs.Random(i.Shape, batch)).ToArray();
        // AUTO's choice for this batch, as the server would serve it.
        var mode = graphed.Jacobian(host, wrt, of, DerivativeMode.Auto).Mode ?? DerivativeMode.Forward;
        eager.Jacobian(host, wrt, of, mode);
        void Sync()
        {
            if (gpu) torch.cuda.synchronize();
        }
        double Micros(Action call) => 1e6 / Measure.PerSecond(1, seconds, call);

        var buffers = new ResultBuffers();
        // Each measured twice, the first discarded: here the first model timed at a new size ran 2-3x slower for
        // seconds, whichever of the two it was (first-touch page faults; docs/benchmarks.md, "Arena heaps kept").
        Micros(() => eager.Jacobian(host, wrt, of, mode, buffers));
        Micros(() => graphed.Jacobian(host, wrt, of, mode, buffers));
        double servedEager = Micros(() => eager.Jacobian(host, wrt, of, mode, buffers));
        double servedGraphs = Micros(() => graphed.Jacobian(host, wrt, of, mode, buffers));

        double upPageable = Micros(() =>
        {
            using var scope = NewDisposeScope();
            DeviceTransfer.ToDevice(host, graphed.Graph);
            Sync();
        });
        // Page-locking needs a GPU.
        double upPinned = !gpu ? double.NaN : Micros(() =>
        {
            using var scope = NewDisposeScope();
            foreach (var h in host) tensor(h.Data, h.Shape, device: CPU).pin_memory().to(new Device(ComputeDevices.Current), non_blocking: true);
            Sync();
        });

        using var keep = NewDisposeScope();
        var inputs = DeviceTransfer.ToDevice(host, graphed.Graph);
        Tensor[] Pass(Tensor[] x)
        {
            var (outputs, jacobians) = graphed.JacobianTensors(x, wrt, of, mode);
            return [.. outputs, .. jacobians];
        }
        void PassAndWait()
        {
            using var scope = NewDisposeScope();
            Pass(inputs);
            Sync();
        }
        Micros(PassAndWait);
        double passEager = Micros(PassAndWait);
        double passReplay = double.NaN;
        if (graphs)
        {
            var (outputs, graph) = new CudaGraphRecorder(0).Record(() => Pass(inputs));
            using (graph)
            {
                passReplay = Micros(() =>
                {
                    graph.Replay();
                    Sync();
                });
            }
            foreach (var t in outputs) t.Dispose();
        }

        var results = Pass(inputs);
        Sync();
        string[] names = [.. results.Select((_, i) => $"r{i}")];
        double downNow = Micros(() => DeviceTransfer.ToHost(results, names, buffers, direct: gpu));
        // The results laid end to end on the host, cut into their arrays.
        void Cut(ReadOnlySpan<float> source)
        {
            int offset = 0;
            for (int i = 0; i < results.Length; i++)
            {
                int count = (int)results[i].numel();
                source.Slice(offset, count).CopyTo(buffers.For(names[i], count));
                offset += count;
            }
        }
        Tensor? staging = null;
        // Page-locking needs a GPU.
        double downPinned = !gpu ? double.NaN : Micros(() =>
        {
            using var scope = NewDisposeScope();
            var flat = cat(results.Select(t => t.reshape(-1)).ToArray());
            staging ??= empty(flat.numel(), ScalarType.Float32, device: CPU).pin_memory().DetachFromDisposeScope();
            staging.copy_(flat, nonBlocking: true);
            Sync();
            Cut(MemoryMarshal.Cast<byte, float>(staging.bytes));
        });
        staging?.Dispose();
        // What the server did before: laid end to end on the device, copied to a new host tensor once, cut there.
        double downStaged = Micros(() =>
        {
            using var scope = NewDisposeScope();
            using var flat = cat(results.Select(t => t.reshape(-1)).ToArray()).cpu();
            Cut(MemoryMarshal.Cast<byte, float>(flat.bytes));
        });
        double megabytes = results.Sum(t => t.numel()) * 4 / 1e6;
        string F(double v) => double.IsNaN(v) ? "-" : v.ToString(v < 100 ? "F1" : "F0", CultureInfo.InvariantCulture);
        return $"| {name} | {batch} | {mode.ToString().ToLowerInvariant()} | {megabytes.ToString("F2", CultureInfo.InvariantCulture)} | {F(servedGraphs)} | {F(servedEager)} | " +
            $"{F(upPageable)} | {F(upPinned)} | {F(passEager)} | {F(passReplay)} | {F(downNow)} | {F(downPinned)} | {F(downStaged)} |";
    }
}
