using System.Diagnostics;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Ops;
using static TorchSharp.torch;

namespace JacService.Bench;

/// <summary>
/// What one model version holds once it has served every kind of call: versions loaded one after another in this
/// process, each called for Predict, both Jacobians, a Vjp, a Jvp and (up to 64 input elements) Hessians and Laplacians
/// with and without the Jacobians (so each builds its derivative graphs), then all
/// freed. Native memory in use is glibc's count of allocated bytes (mallinfo2), which the server's kept heap
/// (Engine:ReuseLargeAllocations) hides from the resident size; managed memory is the GC heap after a full collection.
/// </summary>
public static class VersionMemoryProbe
{
    public static void Run(string path, int versions, int[] batches, bool calibrate)
    {
        var bytes = File.ReadAllBytes(path);
        Console.WriteLine($"{path}: {bytes.Length / 1e6:F1} MB, {versions} versions, calls at batch {string.Join(", ", batches)}{(calibrate ? ", graph and interpreter timed against each other" : "")}");
        Console.WriteLine("| weights | after | native in use MiB | managed MiB | resident MiB |");
        Console.WriteLine("|---|---|---:|---:|---:|");
        foreach (bool share in new[] { true, false })
        {
            var limits = new EngineLimits { CalibrateAuto = calibrate, ShareWeights = share };
            string label = share ? "shared" : "per session";
            var start = Sample();
            Print(label, "start", start, start);
            var loaded = new List<ModelVersion>();
            for (int v = 1; v <= versions; v++)
            {
                var model = ModelVersion.Load("probe", v, bytes, limits);
                loaded.Add(model);
                Print(label, $"version {v} loaded", Sample(), start);
                foreach (int batch in batches) CallEverything(model, batch);
                Print(label, $"version {v} called", Sample(), start);
            }
            foreach (var model in loaded) model.Dispose();
            Print(label, "all freed", Sample(), start);
        }
    }

    private static void CallEverything(ModelVersion model, int batch)
    {
        using var scope = NewDisposeScope();
        using var inference = inference_mode();
        var inputs = model.Inputs.Select(i => Inputs.Random(i.Shape, batch)).ToArray();
        int[] of = [0];
        model.Predict(inputs);
        foreach (var mode in new[] { DerivativeMode.Forward, DerivativeMode.Reverse }) model.Jacobian(inputs, 0, of, mode);
        model.Vjp(inputs, 0, of, [Inputs.Random([-1, .. model.OutputSampleShape(inputs, 0)], batch)]);
        model.Jvp(inputs, 0, of, Inputs.Random(model.Inputs[0].Shape, batch));
        // Second derivatives where the warm-up builds them: up to 64 input elements (ModelWarmup.SecondOrderMaxInputs).
        if (Shapes.Product(inputs[0].Shape[1..]) > 64) return;
        var axes = model.Requests.ResolveAxes([], inputs, 0);
        foreach (bool includeJacobian in new[] { false, true })
        {
            model.Hessian(inputs, 0, of, includeJacobian);
            model.Laplacian(inputs, 0, of, axes, includeJacobian);
        }
    }

    private static (long Native, long Managed, long Resident) Sample()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return (NativeHeap.BytesInUse() ?? 0, GC.GetTotalMemory(true), Process.GetCurrentProcess().WorkingSet64);
    }

    private static void Print(string label, string after, (long Native, long Managed, long Resident) now, (long Native, long Managed, long Resident) start) =>
        Console.WriteLine($"| {label} | {after} | {(now.Native - start.Native) / 1048576.0:+0;-0;0} | {(now.Managed - start.Managed) / 1048576.0:+0;-0;0} | {now.Resident >> 20} |");
}
