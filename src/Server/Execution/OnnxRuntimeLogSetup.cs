using JacService.Core.Models;
using Microsoft.ML.OnnxRuntime;

namespace JacService.Server.Execution;

/// <summary>
/// Routes ONNX Runtime's log into the server's, under the category "OnnxRuntime" (Logging:LogLevel:OnnxRuntime; Error
/// in appsettings.json: its warnings are about graphs, such as an initializer no node reads, not about serving), before
/// any model loads: registered before the repository loader, like <see cref="NativeHeapSetup"/>.
/// </summary>
public sealed partial class OnnxRuntimeLogSetup(ILoggerFactory loggers, ILogger<OnnxRuntimeLogSetup> logger) : IHostedService
{
    public const string Category = "OnnxRuntime";

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var ort = loggers.CreateLogger(Category);
        // ORT filters at the source by the lowest level enabled here, so that lines nobody reads are not formatted.
        var lowest = new[] { LogLevel.Trace, LogLevel.Debug, LogLevel.Warning, LogLevel.Error, LogLevel.Critical }.FirstOrDefault(ort.IsEnabled, LogLevel.None);
        try
        {
            if (!OnnxRuntimeLog.Route((severity, message, location) => LogLine(ort, LevelOf(severity), message, location), MinimumOf(lowest)))
                LogNotRouted(logger);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException)
        {
            // No usable native library: the engine serves everything itself (OnnxRuntimeForward says so per model).
            LogUnavailable(logger, e.Message);
        }
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private static LogLevel LevelOf(OrtLoggingLevel severity) => severity switch
    {
        OrtLoggingLevel.ORT_LOGGING_LEVEL_VERBOSE => LogLevel.Trace,
        // ORT's informational lines describe each session's setup: detail for whoever debugs it.
        OrtLoggingLevel.ORT_LOGGING_LEVEL_INFO => LogLevel.Debug,
        OrtLoggingLevel.ORT_LOGGING_LEVEL_WARNING => LogLevel.Warning,
        OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR => LogLevel.Error,
        _ => LogLevel.Critical,
    };

    private static OrtLoggingLevel MinimumOf(LogLevel lowest) => lowest switch
    {
        LogLevel.Trace => OrtLoggingLevel.ORT_LOGGING_LEVEL_VERBOSE,
        LogLevel.Debug => OrtLoggingLevel.ORT_LOGGING_LEVEL_INFO,
        LogLevel.Warning => OrtLoggingLevel.ORT_LOGGING_LEVEL_WARNING,
        LogLevel.Error => OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        _ => OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL,
    };

    [LoggerMessage(Message = "{Message} ({CodeLocation})")]
    private static partial void LogLine(ILogger logger, LogLevel level, string message, string codeLocation);

    [LoggerMessage(Level = LogLevel.Debug, Message = "ONNX Runtime's environment was made before the server started; its log stays on stderr")]
    private static partial void LogNotRouted(ILogger logger);

    [LoggerMessage(Level = LogLevel.Debug, Message = "ONNX Runtime is not available here ({Reason}); it has no log to route")]
    private static partial void LogUnavailable(ILogger logger, string reason);
}
