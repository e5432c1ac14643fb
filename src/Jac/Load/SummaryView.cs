using System.Globalization;
using Spectre.Console;

namespace JacService.Jac.Load;

/// <summary>The human summary of a load run: counts, latency percentiles, a histogram, status codes, server batches.</summary>
public static class SummaryView
{
    public static void Write(IAnsiConsole console, LoadReport r)
    {
        console.MarkupLine($"[bold]jac load[/]: {Markup.Escape(r.Describe())}");
        var summary = new Table().HideHeaders().AddColumns("", "");
        summary.AddRow("count", $"{r.Count} ({r.Ok} ok, {r.Errors} errors)");
        summary.AddRow("elapsed", $"{F(r.ElapsedS)} s");
        summary.AddRow("throughput", $"{F(r.Rps)} calls/s" + (r.Batch > 1 ? $", {F(r.RowsPerS)} rows/s" : ""));
        if (r.Mode == "open")
            summary.AddRow("behind schedule", $"{r.LateSends} sends > 1 ms late" +
                (r.SendLagMs is { Count: > 0 } lag ? $" (send lag p50 {F(lag["p50"])} ms, p99 {F(lag["p99"])} ms, max {F(lag["max"])} ms)" : ""));
        summary.AddRow("client CPU", $"{F(r.ClientCpuS)} s, {F(r.ClientCpuUsPerCall)} µs per call");
        if (r.ServerBatching is { } b)
            summary.AddRow("server batches", $"{b.Batches} batches, {b.Rows} rows, mean {F(b.MeanBatch)} rows (max {b.MaxBatchSize}), {b.PaddedRows} padded");
        console.Write(summary);

        if (r.LatencyMs.Count > 0)
        {
            console.MarkupLine("Latency (ms)" + (r.Mode == "open" ? ", from the intended send time:" : ":"));
            var keys = new[] { "min", "mean", "p50", "p90", "p95", "p99", "p999", "max" };
            var latency = new Table().AddColumns(keys.Select(k => new TableColumn(k == "p999" ? "p99.9" : k).RightAligned()).ToArray());
            latency.AddRow(keys.Select(k => F(r.LatencyMs[k])).ToArray());
            console.Write(latency);

            var chart = new BarChart().Width(Math.Min(console.Profile.Width, 100)).Label("Latency histogram (calls per bin)");
            foreach (var bin in r.Histogram) chart.AddItem($"≤ {F(bin.ToMs),9} ms", bin.Count, Color.Green);
            console.Write(chart);
        }

        var codes = new Table().AddColumns("status", "calls");
        foreach (var (code, n) in r.StatusCodes.OrderByDescending(p => p.Value)) codes.AddRow(code, n.ToString(CultureInfo.InvariantCulture));
        console.Write(codes);
        if (r.ErrorMessages.Count > 0)
        {
            var errors = new Table().AddColumns("error", "calls");
            foreach (var (message, n) in r.ErrorMessages.Take(10)) errors.AddRow(Markup.Escape(message), n.ToString(CultureInfo.InvariantCulture));
            console.Write(errors);
        }
    }

    private static string F(double v) => v.ToString(v >= 100 ? "0" : v >= 1 ? "0.##" : "0.###", CultureInfo.InvariantCulture);
}
