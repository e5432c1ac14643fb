namespace JacService.Core.Graphs;

/// <summary>Engine:CudaGraphs.</summary>
public enum CudaGraphsSetting
{
    /// <summary>On where the device is a GPU and the graph library is present; eager otherwise.</summary>
    Auto,
    /// <summary>On; the server refuses to start where graphs cannot run (a CPU device, no library).</summary>
    On,
    /// <summary>Every pass runs eagerly.</summary>
    Off,
}
