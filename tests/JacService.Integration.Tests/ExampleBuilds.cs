using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>
/// The example clients' preparation steps, each run once per test run by whichever test needs it first: test classes
/// run in parallel, and two runs of a step at once would delete each other's output.
/// </summary>
internal static class ExampleBuilds
{
    public static readonly string Examples = Path.Combine(Fixtures.Root, "examples");

    /// <summary>The Python stubs (examples/python/generate.sh).</summary>
    public static readonly Lazy<Task<ExampleProcess.Result>> PythonStubs =
        new(() => ExampleProcess.Run("bash", [Path.Combine(Examples, "python", "generate.sh")]));

    /// <summary>The Go stubs and binary, built offline (examples/go/build.sh).</summary>
    public static readonly Lazy<Task<ExampleProcess.Result>> GoBuild =
        new(() => ExampleProcess.Run("bash", [Path.Combine(Examples, "go", "build.sh")]));

    /// <summary>The C++ stubs and binary, built with CMake against Debian's gRPC (examples/cpp/build.sh).</summary>
    public static readonly Lazy<Task<ExampleProcess.Result>> CppBuild =
        new(() => ExampleProcess.Run("bash", [Path.Combine(Examples, "cpp", "build.sh")]));

    /// <summary>Runs an example client once its preparation is done (the example's own checks decide the exit code).</summary>
    public static async Task<ExampleProcess.Result> Run(string language, string[] args, Func<Lazy<Task<ExampleProcess.Result>>, string, Task> prepared)
    {
        switch (language)
        {
            case "python":
                await prepared(PythonStubs, "generating the Python stubs");
                return await ExampleProcess.Run("/usr/bin/python3", [Path.Combine(Examples, "python", "jacclient.py"), .. args]);
            case "go":
                await prepared(GoBuild, "building the Go example");
                return await ExampleProcess.Run(Path.Combine(Examples, "go", "bin", "jacclient"), args);
            case "cpp":
                await prepared(CppBuild, "building the C++ example");
                return await ExampleProcess.Run(Path.Combine(Examples, "cpp", "build", "jacclient"), args);
            case "node":
                Assert.True(Directory.Exists(Path.Combine(Examples, "node", "node_modules", "@grpc", "grpc-js")),
                    "examples/node/node_modules is missing: run scripts/install-test-deps.sh (it runs npm ci)");
                return await ExampleProcess.Run("node", [Path.Combine(Examples, "node", "jacclient.js"), .. args]);
            // The Open Inference Protocol over HTTP with Node's own fetch: no package to install.
            case "node-rest":
                return await ExampleProcess.Run("node", [Path.Combine(Examples, "node", "oip_rest.js"), .. args]);
            default:
                throw new ArgumentOutOfRangeException(nameof(language), language, null);
        }
    }
}
