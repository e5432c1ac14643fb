namespace JacService.Core;

/// <summary>
/// The values of a graph for some input shapes would take more elements than Limits:MaxPlannedElements allows. At load
/// the model is refused (a <see cref="ModelLoadException"/>); on a request whose shapes cause it, RESOURCE_EXHAUSTED.
/// </summary>
public sealed class PlanTooLargeException(string message) : Exception(message);
