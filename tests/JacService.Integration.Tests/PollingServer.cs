namespace JacService.Integration.Tests;

/// <summary>
/// The test server with the repository polled every 0.2 s, shared by the tests of one class: each test adds and
/// removes models of its own name, so they do not see each other's changes.
/// </summary>
public sealed class PollingServer : IAsyncLifetime
{
    public const double PollSeconds = 0.2;

    public ServerProcess Server { get; } = new() { ExtraArgs = [$"--Models:PollSeconds={PollSeconds}"] };

    public Task InitializeAsync() => Server.InitializeAsync();

    public Task DisposeAsync() => Server.DisposeAsync();
}
