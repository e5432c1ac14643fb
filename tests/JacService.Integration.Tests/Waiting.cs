using System.Diagnostics;

namespace JacService.Integration.Tests;

/// <summary>Polling for a server-side change that has no event to wait on (a poll of the repository, a version freed).</summary>
internal static class Waiting
{
    /// <summary>Returns once <paramref name="condition"/> holds; throws with the server log's tail after <paramref name="seconds"/>.</summary>
    public static async Task Until(Func<Task<bool>> condition, string what, ServerProcess server, double seconds = 30)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            if (clock.Elapsed.TotalSeconds > seconds)
                throw new TimeoutException($"{what} within {seconds} s; server log tail:\n{string.Join('\n', server.Log.Split('\n').TakeLast(40))}");
            await Task.Delay(20);
        }
    }
}
