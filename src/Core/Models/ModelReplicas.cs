namespace JacService.Core.Models;

/// <summary>
/// One model version with a replica on each device of <see cref="EngineLimits.Devices"/>: the same file read once, a
/// parameter set, plans and graphs on every GPU, AUTO's choices shared. The first replica is the version's face
/// (signatures, request validation, GetModel); each executor thread computes on the replica of the device it is bound to.
/// </summary>
public sealed class ModelReplicas : IDisposable
{
    private ModelReplicas(IReadOnlyList<ModelVersion> all) => All = all;

    /// <summary>One per device, in the order of <see cref="EngineLimits.Devices"/>.</summary>
    public IReadOnlyList<ModelVersion> All { get; }

    public ModelVersion Primary => All[0];

    /// <summary>Replicas that already exist (tests: CPU stand-ins for GPUs), the first being the version's face.</summary>
    public static ModelReplicas Of(IReadOnlyList<ModelVersion> replicas) =>
        replicas.Count > 0 ? new(replicas) : throw new ArgumentException("a version needs at least one replica", nameof(replicas));

    /// <summary>
    /// Reads model.onnx once and loads it on each device, this thread bound to each in turn (and left on the first);
    /// a replica that fails frees the ones loaded before it.
    /// </summary>
    public static ModelReplicas LoadFile(string name, int version, string path, EngineLimits limits)
    {
        var bytes = ModelVersion.ReadFile(path, limits);
        var replicas = new List<ModelVersion>(limits.Devices.Count);
        try
        {
            foreach (var device in limits.Devices)
            {
                ComputeDevices.BindThread(device);
                replicas.Add(ModelVersion.Load(name, version, bytes, limits with { Device = device }, replicaOf: replicas.FirstOrDefault()));
            }
            return new ModelReplicas(replicas);
        }
        catch
        {
            foreach (var replica in replicas) replica.Dispose();
            throw;
        }
        finally
        {
            ComputeDevices.BindThread(limits.Devices[0]);
        }
    }

    public void Dispose()
    {
        foreach (var replica in All) replica.Dispose();
    }
}
