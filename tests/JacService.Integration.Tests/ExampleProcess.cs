using System.Diagnostics;

namespace JacService.Integration.Tests;

/// <summary>Runs an example client or its build step as a process, with its output, exit code and a 5-minute limit.</summary>
internal static class ExampleProcess
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
    {
        public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
    }

    public static async Task<Result> Run(string fileName, string[] args, Dictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        foreach (var (name, value) in environment ?? []) start.Environment[name] = value;
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        // A cold Go build compiles grpc-go: tens of seconds on a busy two-core machine.
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{fileName} {string.Join(' ', args)} did not finish in 5 minutes");
        }
        return new Result(process.ExitCode, await stdout, await stderr, clock.Elapsed);
    }
}
