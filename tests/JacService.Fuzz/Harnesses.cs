namespace JacService.Fuzz;

/// <summary>The harnesses by name, as scripts/fuzz.sh and the tests call them.</summary>
public static class Harnesses
{
    public static readonly string[] Names = ["model", "request"];

    /// <summary>A harness, disposable because the request harness holds loaded models and their batchers.</summary>
    public static HarnessHandle Create(string name) => name switch
    {
        "model" => new HarnessHandle(new ModelHarness()),
        "request" => new HarnessHandle(new RequestHarness()),
        _ => throw new ArgumentException($"unknown harness '{name}'; there are: {string.Join(", ", Names)}", nameof(name)),
    };
}
