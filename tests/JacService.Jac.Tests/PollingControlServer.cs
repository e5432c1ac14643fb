using JacService.Integration.Tests;

namespace JacService.Jac.Tests;

/// <summary>A server with ModelControl on that also polls its repository every 0.2 s, so folders put in show up by themselves.</summary>
public sealed class PollingControlServer() : ControlServer(["--Models:PollSeconds=0.2"]);
