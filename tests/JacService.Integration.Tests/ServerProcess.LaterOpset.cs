using JacService.Core.Tests;
using JacService.Testing;

namespace JacService.Integration.Tests;

public sealed partial class ServerProcess
{
    /// <summary>The fixture served at a later opset than it was exported with.</summary>
    public const string LaterOpsetModel = "mixed_activations_opset20";

    // mixed_activations as an exporter writes it at opset 20, where its reductions take their axes as inputs.
    partial void AddModelsBuiltHere()
    {
        var version = Path.Combine(RepositoryRoot, LaterOpsetModel, "1");
        Directory.CreateDirectory(version);
        File.WriteAllBytes(Path.Combine(version, "model.onnx"), OpsetUpgrade.To(File.ReadAllBytes(Fixtures.ModelPath("mixed_activations")), 20));
    }
}
