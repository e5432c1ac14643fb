using Microsoft.ML.OnnxRuntime;

namespace JacService.Core.Models;

/// <summary>
/// Where ONNX Runtime's own log lines go: by default its environment writes them raw to stderr (a warning for every
/// unused initializer of a model, at every session), outside the host's log format, levels and filters. ORT has one
/// environment per process and fixes its logger when that is made, on the first session; <see cref="Route"/> must
/// come first, and later calls only re-point the lines (a test process starts several servers).
/// </summary>
public static class OnnxRuntimeLog
{
    private static readonly Lock Gate = new();
    private static volatile Action<OrtLoggingLevel, string, string>? _sink;
    private static bool _routed;

    /// <summary>
    /// Sends ORT's lines of <paramref name="minimum"/> severity or above to <paramref name="sink"/> (severity, message,
    /// ORT's code location). False when ORT's environment was made before without a route here: its lines stay on stderr.
    /// </summary>
    public static bool Route(Action<OrtLoggingLevel, string, string> sink, OrtLoggingLevel minimum)
    {
        lock (Gate)
        {
            _sink = sink;
            if (_routed || OrtEnv.IsCreated) return _routed;
            var options = new EnvironmentCreationOptions { logId = "jacservice", logLevel = minimum, loggingFunction = Forward };
            OrtEnv.CreateInstanceWithOptions(ref options);
            _routed = true;
            return true;
        }
    }

    private static void Forward(IntPtr param, OrtLoggingLevel severity, string category, string logId, string codeLocation, string message) =>
        _sink?.Invoke(severity, message, codeLocation);
}
