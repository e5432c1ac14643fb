using System.Diagnostics;
using JacService.Testing;

namespace JacService.Fuzz.Tests;

/// <summary>scripts/fuzz.sh as a process, from the repository root; its output (standard output and error) in one string.</summary>
public static class FuzzScript
{
    public sealed record Result(int ExitCode, string Output);

    public static Result Run(IEnumerable<string> args, IReadOnlyDictionary<string, string> environment, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(Path.Combine(Fixtures.Root, "scripts", "fuzz.sh"))
        {
            WorkingDirectory = Fixtures.Root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in args) info.ArgumentList.Add(a);
        foreach (var (key, value) in environment) info.Environment[key] = value;
        using var process = Process.Start(info)!;
        var output = new System.Text.StringBuilder();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            throw new TimeoutException($"scripts/fuzz.sh {string.Join(" ", args)} ran over {timeout}:\n{output}");
        }
        process.WaitForExit();
        lock (output) return new Result(process.ExitCode, output.ToString());
    }
}
