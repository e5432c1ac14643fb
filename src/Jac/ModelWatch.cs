using System.Globalization;
using System.Text.Json.Nodes;
using Grpc.Core;
using JacService.Protos.V1;

namespace JacService.Jac;

/// <summary>
/// jac models --watch: lists the server's versions every interval and prints each change since the previous listing (a
/// version listed, appeared, changed state, reloaded or gone), one line per change with the time it was seen, so an
/// operator sees a repository update land, or a script waits for it. A change and its reversal within one interval are
/// not seen; the interval bounds how late a change is printed. A server that stops answering is reported once, and
/// the watch goes on until Ctrl-C or --for.
/// </summary>
public static class ModelWatch
{
    private sealed record Seen(string State, string Error, string LoadedAt);

    public static async Task<int> RunAsync(Connection connection, string? model, TimeSpan interval, TimeSpan? duration, bool json, Io io,
        CancellationToken cancellation)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        if (duration is { } d) stop.CancelAfter(d);
        Dictionary<(string, string), Seen> seen;
        try
        {
            seen = await ListAsync(connection, model, stop.Token);
        }
        catch (Exception e) when (e is (RpcException or OperationCanceledException) && stop.IsCancellationRequested)
        {
            return 0;
        }
        catch (RpcException e)
        {
            throw await Errors.ExplainAsync(e, connection, null);
        }
        foreach (var (key, now) in seen) Print(io, json, key, "listed", null, now);
        await io.Out.FlushAsync(CancellationToken.None);

        bool lost = false;
        using var timer = new PeriodicTimer(interval);
        try
        {
            while (await timer.WaitForNextTickAsync(stop.Token))
            {
                Dictionary<(string, string), Seen> current;
                try
                {
                    current = await ListAsync(connection, model, stop.Token);
                }
                catch (RpcException) when (stop.IsCancellationRequested)
                {
                    break;
                }
                catch (RpcException e)
                {
                    if (!lost) await io.Err.WriteLineAsync($"{Now()}  cannot list the models at {connection.Address}: {e.StatusCode}: {e.Status.Detail}; still trying");
                    lost = true;
                    continue;
                }
                if (lost) await io.Err.WriteLineAsync($"{Now()}  listing again");
                lost = false;
                foreach (var (key, now) in current)
                {
                    if (!seen.TryGetValue(key, out var before)) Print(io, json, key, "appeared", null, now);
                    else if (before.State != now.State || before.Error != now.Error) Print(io, json, key, "changed", before, now);
                    else if (before.LoadedAt != now.LoadedAt) Print(io, json, key, "reloaded", before, now);
                }
                foreach (var (key, before) in seen.Where(s => !current.ContainsKey(s.Key))) Print(io, json, key, "gone", before, null);
                await io.Out.FlushAsync(CancellationToken.None);
                seen = current;
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Ctrl-C or --for: the watch is over, not failed.
        }
        return 0;
    }

    private static async Task<Dictionary<(string, string), Seen>> ListAsync(Connection connection, string? model, CancellationToken cancellation)
    {
        var list = await connection.Client.ListModelsAsync(new ListModelsRequest(),
            deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: cancellation);
        return list.Models.Where(m => model is null || m.Name == model)
            .OrderBy(m => m.Name, StringComparer.Ordinal).ThenBy(m => int.TryParse(m.Version, out int v) ? v : 0)
            .ToDictionary(m => (m.Name, m.Version), m => new Seen(m.State, m.Error, m.LoadedAt));
    }

    private static void Print(Io io, bool json, (string Model, string Version) key, string change, Seen? before, Seen? now)
    {
        string time = Now();
        if (json)
        {
            var line = new JsonObject
            {
                ["time"] = time,
                ["model"] = key.Model,
                ["version"] = key.Version,
                ["change"] = change,
                ["state"] = now?.State ?? "",
                ["previous_state"] = before?.State ?? "",
                ["error"] = now?.Error ?? "",
            };
            io.Out.WriteLine(line.ToJsonString());
            return;
        }
        string what = change switch
        {
            "gone" => $"(was {before!.State})",
            "changed" => $"{before!.State} -> {now!.State}",
            _ => now!.State,
        };
        if (now is { Error.Length: > 0 }) what += ": " + now.Error;
        io.Out.WriteLine($"{time}  {key.Model}  version {key.Version}  {change,-8}  {what}");
    }

    private static string Now() => DateTimeOffset.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);
}
