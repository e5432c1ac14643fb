namespace JacService.Fuzz;

/// <summary>
/// One fuzz target. <see cref="Run"/> returns a one-line outcome for inputs the product handles as designed (accepted,
/// or refused with an exception type the service maps to a status other than INTERNAL); anything else escapes it, and
/// afl-fuzz records the input as a crash.
/// </summary>
public interface IHarness
{
    string Name { get; }

    string Run(byte[] input);

    /// <summary>Writes the seed corpus for this harness into <paramref name="directory"/>.</summary>
    void WriteSeeds(string directory);
}
