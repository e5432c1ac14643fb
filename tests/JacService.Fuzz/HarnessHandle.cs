namespace JacService.Fuzz;

/// <summary>A harness and whatever it holds, released together.</summary>
public sealed class HarnessHandle(IHarness harness) : IDisposable
{
    public IHarness Harness => harness;

    public string Run(byte[] input) => harness.Run(input);

    public void WriteSeeds(string directory) => harness.WriteSeeds(directory);

    public void Dispose() => (harness as IDisposable)?.Dispose();
}
