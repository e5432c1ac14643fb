using System.Security.Cryptography;
using Grpc.Core;
using JacService.Protos.V1;

namespace JacService.Integration.Tests;

/// <summary>
/// The real server with ModelControl on, its token in a file (with the newline an editor leaves), a fresh random token
/// per fixture. The repository is read at start only unless a subclass adds Models:PollSeconds.
/// </summary>
public class ControlServer : IAsyncLifetime
{
    public ControlServer() : this([])
    {
    }

    protected ControlServer(string[] extraArgs)
    {
        Directory.CreateDirectory(_folder);
        File.WriteAllText(TokenFile, Token + "\n");
        // As an operator should keep it: readable by the server's user only.
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(TokenFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        Server = new ServerProcess
        {
            ExtraArgs = ["--ModelControl:Enabled=true", $"--ModelControl:TokenFile={TokenFile}", "--Models:Warmup=false", .. extraArgs],
        };
    }

    private readonly string _folder = Path.Combine(Path.GetTempPath(), "jacservice-control-" + Guid.NewGuid().ToString("N")[..8]);

    public string Token { get; } = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));

    public string TokenFile => Path.Combine(_folder, "token");

    public ServerProcess Server { get; }

    public ModelControl.ModelControlClient Control => new(Server.Channel);

    /// <summary>The metadata every ModelControl call needs.</summary>
    public Metadata Auth => new() { { "authorization", "Bearer " + Token } };

    /// <summary>A new model folder under the repository root, holding <paramref name="from"/>'s model.onnx as each of <paramref name="versions"/>.</summary>
    public string AddModel(string name, string from = "mlp_tanh", int[]? versions = null, string? config = null)
    {
        var folder = Path.Combine(Server.RepositoryRoot, name);
        foreach (int v in versions ?? [1])
        {
            Directory.CreateDirectory(Path.Combine(folder, v.ToString()));
            File.Copy(Testing.Fixtures.ModelPath(from), Path.Combine(folder, v.ToString(), "model.onnx"));
        }
        if (config is not null) File.WriteAllText(Path.Combine(folder, "config.json"), config);
        return folder;
    }

    public Task InitializeAsync() => Server.InitializeAsync();

    public async Task DisposeAsync()
    {
        await Server.DisposeAsync();
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
    }
}
