using System.Globalization;
using System.Net;
using System.Text;

namespace JacService.Jac.Load;

/// <summary>
/// A self-contained HTML page with inline SVG charts. Chosen over PNG through ScottPlot: ScottPlot draws with
/// SkiaSharp, whose native library (and fontconfig) would ship inside a .NET tool that otherwise is pure managed
/// code; an SVG needs nothing but a browser, and it stays sharp when zoomed.
/// </summary>
public static class HtmlReport
{
    private const int W = 760, H = 300, Left = 70, Right = 20, Top = 30, Bottom = 45;

    public static string Render(LoadReport r)
    {
        var s = new StringBuilder();
        s.Append("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>jac load report</title><style>")
         .Append("body{font-family:sans-serif;margin:2em;color:#222} table{border-collapse:collapse;margin:1em 0} ")
         .Append("td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} svg{display:block;margin:1em 0} text{font-size:12px}")
         .Append("</style></head><body>");
        s.Append($"<h1>jac load</h1><p>{E(r.Describe())}</p>");
        s.Append($"<p>{r.Count} calls ({r.Ok} ok, {r.Errors} errors) in {F(r.ElapsedS)} s: <b>{F(r.Rps)} calls/s</b>");
        if (r.Mode == "open") s.Append($"; {r.LateSends} sends more than 1 ms behind schedule");
        if (r.ServerBatching is { } b) s.Append($"; server: {b.Batches} batches, mean {F(b.MeanBatch)} rows");
        s.Append("</p>");
        if (r.LatencyMs.Count > 0)
        {
            s.Append("<table><tr>");
            foreach (var k in r.LatencyMs.Keys) s.Append($"<th>{(k == "p999" ? "p99.9" : k)}</th>");
            s.Append("</tr><tr>");
            foreach (var v in r.LatencyMs.Values) s.Append($"<td>{F(v)} ms</td>");
            s.Append("</tr></table>");
        }
        s.Append("<table><tr><th>status</th><th>calls</th></tr>");
        foreach (var (code, n) in r.StatusCodes) s.Append($"<tr><td>{E(code)}</td><td>{n}</td></tr>");
        s.Append("</table>");

        if (r.Percentiles.Count > 1)
        {
            // Percentiles on the x axis as "1 in N" (log scale), the usual HdrHistogram picture: the tail gets room.
            var points = r.Percentiles.Where(p => p.Percentile < 100).Select(p => (X: Math.Log10(100 / (100 - p.Percentile)), Y: p.Ms)).ToList();
            s.Append(Chart("Latency by percentile", "percentile", "ms", [("latency", "#1f77b4", points)],
                x => (100 - 100 / Math.Pow(10, x)).ToString("0.###", CultureInfo.InvariantCulture) + "%"));
        }
        if (r.Histogram.Count > 0) s.Append(Bars(r.Histogram));
        if (r.Timeline.Count > 1)
        {
            s.Append(Chart("Throughput over time", "seconds", "calls/s",
                [("ok+errors per s", "#2ca02c", r.Timeline.Select(t => (t.TimeS, t.Rps)).ToList()),
                 ("errors per s", "#d62728", r.Timeline.Select((t, i) => (t.TimeS, t.Errors / Math.Max(1e-9, t.TimeS - (i > 0 ? r.Timeline[i - 1].TimeS : 0)))).ToList())],
                x => F(x)));
            s.Append(Chart("Latency over time", "seconds", "ms",
                [("p50", "#1f77b4", r.Timeline.Select(t => (t.TimeS, t.P50Ms)).ToList()), ("p99", "#ff7f0e", r.Timeline.Select(t => (t.TimeS, t.P99Ms)).ToList())],
                x => F(x)));
        }
        s.Append("</body></html>\n");
        return s.ToString();
    }

    private static string Chart(string title, string xLabel, string yLabel, List<(string Name, string Color, List<(double X, double Y)> Points)> series,
        Func<double, string> xTick)
    {
        var all = series.SelectMany(x => x.Points).ToList();
        double x0 = all.Min(p => p.X), x1 = Math.Max(all.Max(p => p.X), x0 + 1e-9), y1 = Math.Max(all.Max(p => p.Y), 1e-9) * 1.05;
        double Px(double x) => Left + (x - x0) / (x1 - x0) * (W - Left - Right);
        double Py(double y) => H - Bottom - y / y1 * (H - Top - Bottom);
        var s = new StringBuilder($"<svg width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" xmlns=\"http://www.w3.org/2000/svg\">");
        s.Append($"<text x=\"{Left}\" y=\"18\" style=\"font-size:14px;font-weight:bold\">{E(title)}</text>");
        Axes(s, xLabel, yLabel, y1, i => (Px(x0 + (x1 - x0) * i / 5), xTick(x0 + (x1 - x0) * i / 5)));
        int legend = 0;
        foreach (var (name, color, points) in series)
        {
            s.Append($"<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"");
            foreach (var (x, y) in points) s.Append(N(Px(x))).Append(',').Append(N(Py(y))).Append(' ');
            s.Append("\"/>");
            s.Append($"<text x=\"{W - Right - 150}\" y=\"{Top + 14 * legend++}\" fill=\"{color}\">{E(name)}</text>");
        }
        return s.Append("</svg>").ToString();
    }

    private static string Bars(List<HistogramBin> bins)
    {
        double y1 = Math.Max(1, bins.Max(b => b.Count)) * 1.05, width = (W - Left - Right) / (double)bins.Count;
        double Py(double y) => H - Bottom - y / y1 * (H - Top - Bottom);
        var s = new StringBuilder($"<svg width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" xmlns=\"http://www.w3.org/2000/svg\">");
        s.Append($"<text x=\"{Left}\" y=\"18\" style=\"font-size:14px;font-weight:bold\">Latency histogram (logarithmic bins)</text>");
        Axes(s, "ms (bin upper edge)", "calls", y1, i => (Left + width * (i * (bins.Count - 1) / 5.0 + 1), F(bins[i * (bins.Count - 1) / 5].ToMs)));
        for (int i = 0; i < bins.Count; i++)
            s.Append($"<rect x=\"{N(Left + i * width + 1)}\" y=\"{N(Py(bins[i].Count))}\" width=\"{N(width - 2)}\" height=\"{N(H - Bottom - Py(bins[i].Count))}\" fill=\"#2ca02c\"><title>{F(bins[i].FromMs)}–{F(bins[i].ToMs)} ms: {bins[i].Count}</title></rect>");
        return s.Append("</svg>").ToString();
    }

    private static void Axes(StringBuilder s, string xLabel, string yLabel, double yMax, Func<int, (double X, string Label)> xTicks)
    {
        s.Append($"<line x1=\"{Left}\" y1=\"{H - Bottom}\" x2=\"{W - Right}\" y2=\"{H - Bottom}\" stroke=\"#444\"/>");
        s.Append($"<line x1=\"{Left}\" y1=\"{Top}\" x2=\"{Left}\" y2=\"{H - Bottom}\" stroke=\"#444\"/>");
        for (int i = 0; i <= 5; i++)
        {
            double y = H - Bottom - i / 5.0 * (H - Top - Bottom);
            s.Append($"<text x=\"{Left - 6}\" y=\"{N(y + 4)}\" text-anchor=\"end\">{F(yMax * i / 5)}</text>");
            s.Append($"<line x1=\"{Left}\" y1=\"{N(y)}\" x2=\"{W - Right}\" y2=\"{N(y)}\" stroke=\"#eee\"/>");
            var (x, label) = xTicks(i);
            s.Append($"<text x=\"{N(x)}\" y=\"{H - Bottom + 16}\" text-anchor=\"middle\">{E(label)}</text>");
        }
        s.Append($"<text x=\"{(W + Left) / 2}\" y=\"{H - 8}\" text-anchor=\"middle\">{E(xLabel)}</text>");
        s.Append($"<text x=\"14\" y=\"{(H - Bottom + Top) / 2}\" transform=\"rotate(-90 14 {(H - Bottom + Top) / 2})\" text-anchor=\"middle\">{E(yLabel)}</text>");
    }

    private static string E(string text) => WebUtility.HtmlEncode(text);
    private static string N(double v) => v.ToString("0.#", CultureInfo.InvariantCulture);
    private static string F(double v) => v.ToString(v >= 100 ? "0" : v >= 1 ? "0.##" : "0.###", CultureInfo.InvariantCulture);
}
