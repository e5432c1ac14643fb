namespace JacService.Fuzz;

/// <summary>The checkout the harness runs from, for the fixture models: JACSERVICE_ROOT, or the first folder up from here holding JacService.sln.</summary>
public static class RepositoryRoot
{
    public static string Find()
    {
        if (Environment.GetEnvironmentVariable("JACSERVICE_ROOT") is { Length: > 0 } root) return root;
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "JacService.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("no JacService.sln above the working directory or the harness; set JACSERVICE_ROOT");
    }

    public static string FixtureModel(string root, string name) => Path.Combine(root, "tests", "fixtures", "models", name, "1", "model.onnx");
}
