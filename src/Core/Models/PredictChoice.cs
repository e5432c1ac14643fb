namespace JacService.Core.Models;

/// <summary>
/// What serves Predict at one batch size of a version that ONNX Runtime serves: "onnxruntime" or "engine", whichever ran
/// a batch of that size faster when it first came, with each one's time (zero where untimed, infinite for an engine run
/// stopped once it could no longer win, or one that failed).
/// </summary>
public sealed record PredictChoice(long Batch, string Runtime, double OnnxRuntimeMicroseconds, double EngineMicroseconds, bool Timed);
