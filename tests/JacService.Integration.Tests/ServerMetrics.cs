namespace JacService.Integration.Tests;

/// <summary>A server's /metrics as the tests read it, and waits for what it reports.</summary>
public static class ServerMetrics
{
    public static async Task<List<PrometheusSample>> Scrape(ServerProcess server)
    {
        using var http = new HttpClient();
        return PrometheusText.Parse(await http.GetStringAsync($"http://127.0.0.1:{server.MetricsPort}/metrics"));
    }

    /// <summary>Until the calls in progress hold <paramref name="bytes"/> of the call memory budget (the exporter caches a scrape briefly).</summary>
    public static async Task WaitForHeld(ServerProcess server, long bytes)
    {
        double last = -1;
        for (var deadline = DateTime.UtcNow.AddSeconds(20); DateTime.UtcNow < deadline; await Task.Delay(100))
        {
            last = (await Scrape(server)).Where(s => s.Name == "jacservice_call_memory_held_bytes").Sum(s => s.Value);
            if (last == bytes) return;
        }
        Assert.Fail($"the server holds {last} bytes for calls in progress; expected {bytes}");
    }
}
