using System.Diagnostics;
using Grpc.Health.V1;
using Grpc.Net.Client;
using JacService.Client;
using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>
/// The real server as its own process on a free loopback port, serving a temporary repository with every
/// fixture model next to broken ones (garbage bytes, an unsupported op, an invalid graph, a missing file, and
/// good models under bad config.json files).
/// </summary>
public sealed partial class ServerProcess : IAsyncLifetime, IAsyncDisposable
{
    private Process _process = new();
    private bool _started;
    private readonly bool _portsChosenHere = true;
    private int _port = FreePorts.Next();
    private readonly List<string> _log = [];

    public string RepositoryRoot { get; } = Path.Combine(Path.GetTempPath(), "jacservice-it-" + Guid.NewGuid().ToString("N")[..8]);
    /// <summary>The gRPC port; set it (from <see cref="FreePort"/>) to name it in <see cref="ExtraArgs"/>, e.g. in a Kestrel endpoint.</summary>
    public int Port
    {
        get => _port;
        init { _port = value; _portsChosenHere = false; }
    }
    public string Target => $"127.0.0.1:{Port}";
    /// <summary>The plain HTTP port serving Prometheus metrics at /metrics.</summary>
    public int MetricsPort { get; private set; } = FreePorts.Next();
    /// <summary>The Open Inference Protocol's HTTP/REST port (OpenInference:RestUrl), plain HTTP/1.1 on loopback.</summary>
    public int RestPort { get; private set; } = FreePorts.Next();
    public GrpcChannel Channel { get; private set; } = null!;
    public JacobianService.JacobianServiceClient Client { get; private set; } = null!;
    public int ProcessId => _process.Id;
    public bool HasExited => _process.HasExited;
    public int ExitCode => _process.ExitCode;

    /// <summary>Extra command-line settings, set before <see cref="InitializeAsync"/>.</summary>
    public string[] ExtraArgs { get; init; } = [];

    /// <summary>Extra environment variables (OTEL_*), set before <see cref="InitializeAsync"/>.</summary>
    public Dictionary<string, string> EnvironmentVariables { get; init; } = [];

    /// <summary>
    /// Makes <see cref="Channel"/> from <see cref="Target"/>, for a server that does not speak plaintext on <see cref="Port"/>
    /// (TLS from Kestrel:Endpoints); by default a plaintext channel.
    /// </summary>
    public Func<string, GrpcChannel>? CreateChannel { get; init; }

    /// <summary>False: the repository starts empty, for a server of only the models <see cref="PrepareRepository"/> puts there.</summary>
    public bool CopyFixtures { get; init; } = true;

    /// <summary>Called with the repository root after the fixture models are copied, to add models of a test's own.</summary>
    public Action<string>? PrepareRepository { get; init; }

    /// <summary>A started server whose repository holds the fixture <paramref name="model"/> alone, as version 1.</summary>
    public static async Task<ServerProcess> Serving(string model, params string[] extraArgs)
    {
        var server = new ServerProcess
        {
            ExtraArgs = extraArgs,
            CopyFixtures = false,
            PrepareRepository = root =>
                File.Copy(Fixtures.ModelPath(model), Path.Combine(Directory.CreateDirectory(Path.Combine(root, model, "1")).FullName, "model.onnx")),
        };
        await server.InitializeAsync();
        return server;
    }

    public string Log
    {
        get { lock (_log) return string.Join('\n', _log); }
    }

    /// <summary>
    /// Returns once the log holds <paramref name="text"/>. A line reaches <see cref="Log"/> through the server's stdout
    /// some time after the call that caused it has answered, so a log line is waited for, never asserted at once.
    /// </summary>
    public Task WaitForLog(string text, double seconds = 30) =>
        Waiting.Until(() => Task.FromResult(Log.Contains(text, StringComparison.Ordinal)), $"the log did not say \"{text}\"", this, seconds);

    public async Task InitializeAsync()
    {
        if (CopyFixtures) BuildRepository();
        else Directory.CreateDirectory(RepositoryRoot);
        PrepareRepository?.Invoke(RepositoryRoot);
        for (int attempt = 1; ; attempt++)
        {
            // Two free ports found one after the other can be the same port (the first is closed before the second is
            // looked for), and the server refuses metrics on the gRPC port.
            while (MetricsPort == Port) MetricsPort = FreePorts.Next();
            // Nor the port of an endpoint the test configures: the server would take that endpoint for the REST one.
            while (RestPort == Port || RestPort == MetricsPort || ExtraArgs.Any(a => a.Contains($":{RestPort}", StringComparison.Ordinal)))
                RestPort = FreePorts.Next();
            Start();
            try
            {
                await WaitUntilServing(TimeSpan.FromSeconds(180));
                return;
            }
            // A port is free when a probe can bind it (FreePorts); until the server binds it, another listener may take
            // it. Ports this class chose are chosen again.
            catch (InvalidOperationException) when (_portsChosenHere && attempt < 3)
            {
                await _process.WaitForExitAsync(); // it has exited: this reads its output to the end
                if (!Log.Contains("address already in use", StringComparison.OrdinalIgnoreCase)) throw;
                Channel.Dispose();
                _process.Dispose();
                _process = new Process();
                lock (_log) _log.Clear();
                _port = FreePorts.Next();
                MetricsPort = FreePorts.Next();
                RestPort = FreePorts.Next();
            }
        }
    }

    private void Start()
    {
        var serverDll = ServerDll();
        _process.StartInfo = new ProcessStartInfo("dotnet")
        {
            ArgumentList = { serverDll, "--urls", $"http://{Target}", $"--Models:Root={RepositoryRoot}",
                $"--Telemetry:MetricsUrl=http://127.0.0.1:{MetricsPort}", $"--OpenInference:RestUrl=http://127.0.0.1:{RestPort}" },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in ExtraArgs) _process.StartInfo.ArgumentList.Add(arg);
        foreach (var (name, value) in EnvironmentVariables) _process.StartInfo.Environment[name] = value;
        _process.StartInfo.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.Add(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.Add(e.Data); };
        _started = _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();

        Channel = CreateChannel?.Invoke(Target) ?? JacServiceChannel.Create($"http://{Target}");
        Client = new JacobianService.JacobianServiceClient(Channel);
    }

    /// <summary>
    /// Generous (180 s at start): the start warms every fixture model up, and on a shared 2-core machine running the
    /// other test projects beside this one that has taken over a minute. A server that exits is reported at once.
    /// </summary>
    private async Task WaitUntilServing(TimeSpan timeout)
    {
        var health = new Health.HealthClient(Channel);
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (_process.HasExited) throw new InvalidOperationException($"server exited with {_process.ExitCode}:\n{Log}");
            try
            {
                var reply = await health.CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow.AddSeconds(2));
                if (reply.Status == HealthCheckResponse.Types.ServingStatus.Serving) return;
            }
            catch (Grpc.Core.RpcException)
            {
                // Not listening yet.
            }
            await Task.Delay(200);
        }
        throw new TimeoutException($"server not SERVING after {timeout}:\n{Log}");
    }

    /// <summary>Sends SIGTERM, as Kubernetes does when it stops a pod.</summary>
    public void Terminate() => Process.Start("kill", ["-TERM", _process.Id.ToString()])!.WaitForExit();

    public Task WaitForExitAsync(CancellationToken cancellation) => _process.WaitForExitAsync(cancellation);

    /// <summary>Resident memory of the server process in bytes.</summary>
    public long ResidentBytes() => StatusBytes("VmRSS:");

    /// <summary>The most resident memory the server process has had, in bytes: what a brief allocation since freed took too.</summary>
    public long PeakResidentBytes() => StatusBytes("VmHWM:");

    private long StatusBytes(string field)
    {
        foreach (var line in File.ReadLines($"/proc/{_process.Id}/status"))
            if (line.StartsWith(field, StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        throw new InvalidOperationException($"{field} not found");
    }

    private void BuildRepository()
    {
        foreach (var dir in Directory.GetDirectories(Fixtures.ModelsDir))
            CopyVersion(Path.Combine(dir, "1"), Path.Combine(RepositoryRoot, Path.GetFileName(dir), "1"));
        var bad = Path.Combine(Fixtures.Root, "tests", "fixtures", "bad");
        CopyVersion(Path.Combine(bad, "unsupported_op", "1"), Path.Combine(RepositoryRoot, "unsupported_op", "1"));
        CopyVersion(Path.Combine(bad, "invalid_graph", "1"), Path.Combine(RepositoryRoot, "invalid_graph", "1"));

        Directory.CreateDirectory(Path.Combine(RepositoryRoot, "garbage", "1"));
        File.WriteAllBytes(Path.Combine(RepositoryRoot, "garbage", "1", "model.onnx"),
            Enumerable.Range(0, 4096).Select(i => (byte)(i * 7919 % 251)).ToArray());
        Directory.CreateDirectory(Path.Combine(RepositoryRoot, "missing_file", "1"));
        File.WriteAllText(Path.Combine(RepositoryRoot, "missing_file", "1", "README.txt"), "no model.onnx here");

        // A good model under a config.json the server must refuse: unknown key, a value out of range, not JSON.
        foreach (var (name, config) in BadConfigs)
        {
            CopyVersion(Path.Combine(Fixtures.ModelsDir, "mlp_tanh", "1"), Path.Combine(RepositoryRoot, name, "1"));
            File.WriteAllText(Path.Combine(RepositoryRoot, name, "config.json"), config);
        }

        // A second, newer version of mlp_tanh so "latest" resolution is exercised.
        CopyVersion(Path.Combine(Fixtures.ModelsDir, "mlp_tanh", "1"), Path.Combine(RepositoryRoot, "mlp_tanh", "2"));
        AddModelsBuiltHere();
    }

    /// <summary>Models the test project writes itself (the integration tests: a fixture at a later opset); none elsewhere.</summary>
    partial void AddModelsBuiltHere();

    private static readonly (string Name, string Config)[] BadConfigs =
    [
        ("config_unknown_key", """{ "batching": { "maxBatchSize": 8, "colour": "red" } }"""),
        ("config_out_of_range", """{ "batching": { "maxBatchSize": 0 } }"""),
        ("config_not_json", """{ "batching": { maxBatchSize: 8 """),
    ];

    private static void CopyVersion(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
    }

    public static string ServerDll()
    {
        // Same configuration as the running test assembly: bin/<Configuration>/net10.0/linux-x64/ (this file is also
        // linked into other test projects, so the tail is taken from "bin" on, not from this project's folder).
        var here = AppContext.BaseDirectory;
        var tail = here[(here.LastIndexOf("/bin/", StringComparison.Ordinal) + 1)..];
        var dll = Path.Combine(Fixtures.Root, "src", "Server", tail, "JacService.Server.dll");
        return File.Exists(dll) ? dll : throw new FileNotFoundException("server build output not found", dll);
    }

    async ValueTask IAsyncDisposable.DisposeAsync() => await DisposeAsync();

    public async Task DisposeAsync()
    {
        Channel?.Dispose();
        // Never started (the build output was missing, say): nothing to stop, and HasExited would throw.
        if (_started && !_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
        try { Directory.Delete(RepositoryRoot, recursive: true); } catch (IOException) { }
    }
}

[CollectionDefinition(Name)]
public sealed class ServerCollection : ICollectionFixture<ServerProcess>
{
    public const string Name = "server";
}
