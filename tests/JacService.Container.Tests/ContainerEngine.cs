using System.Diagnostics;

namespace JacService.Container.Tests;

/// <summary>
/// The local Docker engine and the command-line tools next to it (docker, docker-compose, helm), as
/// scripts/install-container-deps.sh leaves them. Tests fail with a pointer to that script when something is missing,
/// rather than pass without having run.
/// </summary>
public static class ContainerEngine
{
    public const string ImageName = "jacservice:local";

    static ContainerEngine()
    {
        // Debian's engine speaks API 1.41 and builds with the legacy builder only; the Ryuk reaper image cannot be
        // pulled; the machine has /.dockerenv, so without the override Testcontainers would target the bridge gateway
        // instead of the loopback ports it publishes.
        SetDefault("DOCKER_API_VERSION", "1.41");
        SetDefault("DOCKER_BUILDKIT", "0");
        SetDefault("TESTCONTAINERS_RYUK_DISABLED", "true");
        SetDefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1");
    }

    /// <summary>Applies the settings above (before any Testcontainers type reads them) and checks the engine answers.</summary>
    public static void EnsureAvailable()
    {
        var version = Run("docker", ["version", "--format", "{{.Server.Version}}"], allowFailure: true);
        if (version.ExitCode != 0)
            throw new InvalidOperationException(
                "The Docker engine is not reachable (run scripts/install-container-deps.sh, which test.sh does):\n" + version.Output);
        foreach (var image in new[] { "mcr.microsoft.com/dotnet/sdk:10.0", "mcr.microsoft.com/dotnet/aspnet:10.0" })
            if (Run("docker", ["image", "inspect", image], allowFailure: true).ExitCode != 0)
                throw new InvalidOperationException(
                    $"Base image {image} is missing and cannot be pulled here (scripts/install-container-deps.sh builds a local one).");
    }

    public sealed record Result(int ExitCode, string Output);

    /// <summary>Runs a tool to completion; output is stdout and stderr together, for failure messages.</summary>
    public static Result Run(string file, IEnumerable<string> args, IDictionary<string, string>? env = null,
        bool allowFailure = false, TimeSpan? timeout = null)
    {
        var start = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = JacService.Testing.Fixtures.Root,
        };
        foreach (var a in args) start.ArgumentList.Add(a);
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) start.Environment[k] = v;

        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"'{file}' is not installed (scripts/install-container-deps.sh installs it): {e.Message}");
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(timeout ?? TimeSpan.FromMinutes(5)))
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in time");
            }
            var result = new Result(process.ExitCode, stdout.Result + stderr.Result);
            if (!allowFailure && result.ExitCode != 0)
                throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited with {result.ExitCode}:\n{result.Output}");
            return result;
        }
    }

    private static void SetDefault(string name, string value)
    {
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable(name))) Environment.SetEnvironmentVariable(name, value);
    }
}
