namespace JacService.Fuzz;

/// <summary>The harnesses by name, as scripts/fuzz.sh and the tests call them.</summary>
public static class Harnesses
{
    /// <summary>"model-ort" is the model harness with ONNX Runtime on; it runs by hand, not in the suite (a session per file is slow).</summary>
    public static readonly string[] Names = ["model", "model-ort", "request"];

    /// <summary>A harness, disposable because the request harness holds loaded models and their batchers.</summary>
    public static HarnessHandle Create(string name) => name switch
    {
        "model" => new HarnessHandle(new ModelHarness()),
        "model-ort" => new HarnessHandle(new ModelHarness(onnxRuntime: true)),
        "request" => new HarnessHandle(new RequestHarness()),
        _ => throw new ArgumentException($"unknown harness '{name}'; there are: {string.Join(", ", Names)}", nameof(name)),
    };
}
