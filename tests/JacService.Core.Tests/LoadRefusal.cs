using JacService.Core.Models;

namespace JacService.Core.Tests;

/// <summary>Builds a test model and loads it, expecting the loader to refuse it.</summary>
public static class LoadRefusal
{
    /// <summary>The refusal's message.</summary>
    public static string Of(Action<OnnxBuilder> build)
    {
        var g = new OnnxBuilder();
        build(g);
        return Assert.Throws<ModelLoadException>(() => ModelVersion.Load("refused", 1, g.ToBytes(), new EngineLimits())).Message;
    }
}
