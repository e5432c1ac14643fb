using JacService.Jac;

namespace JacService.Jac.Tests;

/// <summary>Runs jac's entry point in-process with captured standard output and error.</summary>
public static class JacRunner
{
    public sealed record Result(int ExitCode, string Out, string Err);

    public static async Task<Result> RunAsync(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await JacApp.RunAsync(args, new Io(stdout, stderr));
        return new Result(code, stdout.ToString(), stderr.ToString());
    }

    public static string TempDir()
    {
        var dir = Path.Combine(Path.GetTempPath(), "jac-tests-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        return dir;
    }
}
