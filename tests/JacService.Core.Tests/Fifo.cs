using System.Diagnostics;

namespace JacService.Core.Tests;

/// <summary>Named pipes for tests of files that must not be opened: .NET has no mkfifo, so the coreutils command makes them.</summary>
public static class Fifo
{
    public static void Make(string path)
    {
        using var mkfifo = Process.Start(new ProcessStartInfo("mkfifo", [path]) { RedirectStandardError = true })!;
        string error = mkfifo.StandardError.ReadToEnd();
        mkfifo.WaitForExit();
        if (mkfifo.ExitCode != 0) throw new InvalidOperationException($"mkfifo {path} failed: {error}");
    }
}
