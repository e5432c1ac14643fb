namespace JacService.Core.Graphs;

/// <summary>Whether this process can record CUDA graphs: the native library's presence, for settings and GetModel.</summary>
public static class GraphLibrary
{
    /// <summary>Null when libJacServiceCudaGraphs is loaded and speaks this server's API; else why not.</summary>
    public static string? Availability => CudaGraphNative.Availability;
}
