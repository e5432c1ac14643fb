using JacService.Core.Planning;
using Microsoft.ML.OnnxRuntime;

namespace JacService.Core.Models;

/// <summary>
/// An ONNX Runtime session's run that stops when its batch is abandoned (<see cref="BatchCancellation"/>), as the
/// interpreter's passes do between ops. ORT runs a whole graph in one native call; the one way in is
/// <see cref="RunOptions.Terminate"/>, which its executor reads before each node. A compiled Hessian computes every
/// direction of every direction in that call: without this, a caller's deadline left it running for as long as the
/// graph took.
/// </summary>
internal static class CancellableRun
{
    /// <summary>
    /// <paramref name="session"/>'s outputs for these inputs, with <paramref name="shared"/> (the session's read-only
    /// options) unless the running batch can be abandoned; throws <see cref="OperationCanceledException"/> once it is.
    /// </summary>
    public static IDisposableReadOnlyCollection<OrtValue> Run(InferenceSession session, RunOptions shared, string[] inputNames,
        OrtValue[] values, string[] outputNames)
    {
        var cancellation = BatchCancellation.Current;
        if (!cancellation.CanBeCanceled) return session.Run(shared, inputNames, values, outputNames);
        cancellation.ThrowIfCancellationRequested();
        // Options of its own: setting Terminate on the shared ones would stop every other caller's run of the session.
        // Its failures come back as the OnnxRuntimeException that the caller reports; a run stopped on purpose is none. ORT
        // also logs each at error level: AUTO's and the graph-or-interpreter timings' stopped runs wrote one error line per
        // Scan node at every start.
        using var options = new RunOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        // Disposed before the options: a callback already running finishes first.
        using var registration = cancellation.Register(() => options.Terminate = true);
        try
        {
            return session.Run(options, inputNames, values, outputNames);
        }
        catch (OnnxRuntimeException) when (cancellation.IsCancellationRequested)
        {
            throw new OperationCanceledException("the batch was abandoned while ONNX Runtime ran it", cancellation);
        }
    }
}
