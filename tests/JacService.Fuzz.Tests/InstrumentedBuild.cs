using JacService.Testing;

namespace JacService.Fuzz.Tests;

/// <summary>
/// One instrumented publish of the harnesses (scripts/fuzz.sh build) in a folder of its own, shared by the fuzz runs
/// of a test class and deleted after them.
/// </summary>
public sealed class InstrumentedBuild : IDisposable
{
    public InstrumentedBuild()
    {
        Directory = Path.Combine(Path.GetTempPath(), "jacservice-fuzz-" + Guid.NewGuid().ToString("N")[..8]);
        var build = FuzzScript.Run(["build"], Environment, TimeSpan.FromMinutes(15));
        if (build.ExitCode != 0) throw new InvalidOperationException($"scripts/fuzz.sh build exited {build.ExitCode}:\n{build.Output}");
    }

    public string Directory { get; }

    public string BuildDirectory => Path.Combine(Directory, "build");

    /// <summary>What the script needs to reuse this build.</summary>
    public Dictionary<string, string> Environment => new() { ["FUZZ_BUILD_DIR"] = BuildDirectory, ["FUZZ_SKIP_BUILD"] = "1" };

    public void Dispose()
    {
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // A temporary folder left behind is no failure of the fuzz runs.
        }
    }
}
