using Grpc.Core;

namespace JacService.Jac.Load;

/// <summary>What to send and how: everything the runner needs, already resolved from the command line.</summary>
public sealed record LoadPlan(
    string Method, string? Model, string Target, bool OpenLoop, Ramp Ramp, int Concurrency, int Connections,
    long? Requests, TimeSpan? Duration, int Rows, TimeSpan Timeout,
    /// <summary>One per connection: starts a call with the given options.</summary>
    Func<CallOptions, Task>[] Senders);
