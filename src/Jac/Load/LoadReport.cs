using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using HdrHistogram;

namespace JacService.Jac.Load;

/// <summary>What `jac load` measured. Serialized with snake_case names; latencies in milliseconds.</summary>
public sealed class LoadReport
{
    public string Method { get; init; } = "";
    public string? Model { get; init; }
    public string Target { get; init; } = "";
    /// <summary>"open" (constant arrival rate) or "closed" (each worker sends when its previous call returns).</summary>
    public string Mode { get; init; } = "";
    public string Ramp { get; init; } = "none";
    public double? RpsTarget { get; init; }
    public int Concurrency { get; init; }
    public int Connections { get; init; }
    public int Batch { get; init; }
    public double TimeoutS { get; init; }
    public double ElapsedS { get; init; }
    /// <summary>Calls sent; every one has finished, as OK or as an error, so count = ok + errors.</summary>
    public long Count { get; init; }
    public long Ok { get; init; }
    public long Errors { get; init; }
    /// <summary>Finished calls per second of elapsed time.</summary>
    public double Rps { get; init; }
    public double RowsPerS { get; init; }
    /// <summary>Over every finished call, OK or not (as ghz does); open loop measures from the intended send time.</summary>
    public Dictionary<string, double> LatencyMs { get; init; } = [];
    public List<HistogramBin> Histogram { get; init; } = [];
    /// <summary>The percentile curve (HdrHistogram's iteration), for plotting.</summary>
    public List<PercentilePoint> Percentiles { get; init; } = [];
    public Dictionary<string, long> StatusCodes { get; init; } = [];
    public Dictionary<string, long> ErrorMessages { get; init; } = [];
    /// <summary>Open loop: sends that left more than 1 ms after their intended time (the tool or --concurrency fell behind).</summary>
    public long LateSends { get; init; }
    public Dictionary<string, double>? SendLagMs { get; init; }
    public ServerBatching? ServerBatching { get; set; }
    /// <summary>CPU time of the jac process during the run: the tool's own cost, to compare with the server's.</summary>
    public double ClientCpuS { get; init; }
    public double ClientCpuUsPerCall { get; init; }
    public List<TimelinePoint> Timeline { get; init; } = [];

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public static LoadReport FromJson(string json) => JsonSerializer.Deserialize<LoadReport>(json, Json)!;

    public static readonly string[] CsvColumns =
    [
        "method", "model", "mode", "ramp", "rps_target", "concurrency", "connections", "batch", "elapsed_s", "count", "ok", "errors",
        "rps", "rows_per_s", "min_ms", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "late_sends",
        "server_mean_batch", "client_cpu_us_per_call",
    ];

    /// <summary>A header and one row, so runs can be appended to one file and compared.</summary>
    public string ToCsv()
    {
        string L(string key) => LatencyMs.TryGetValue(key, out var v) ? F(v) : "";
        string[] values =
        [
            Method, Model ?? "", Mode, Ramp, RpsTarget is { } r ? F(r) : "", Concurrency.ToString(CultureInfo.InvariantCulture),
            Connections.ToString(CultureInfo.InvariantCulture), Batch.ToString(CultureInfo.InvariantCulture), F(ElapsedS),
            Count.ToString(CultureInfo.InvariantCulture), Ok.ToString(CultureInfo.InvariantCulture), Errors.ToString(CultureInfo.InvariantCulture),
            F(Rps), F(RowsPerS), L("min"), L("mean"), L("p50"), L("p90"), L("p95"), L("p99"), L("p999"), L("max"),
            LateSends.ToString(CultureInfo.InvariantCulture), ServerBatching is { } b ? F(b.MeanBatch) : "", F(ClientCpuUsPerCall),
        ];
        return string.Join(',', CsvColumns) + "\n" + string.Join(',', values.Select(Csv)) + "\n";
    }

    private static string F(double v) => v.ToString("0.###", CultureInfo.InvariantCulture);

    private static string Csv(string v) => v.IndexOfAny([',', '"', '\n']) >= 0 ? "\"" + v.Replace("\"", "\"\"") + "\"" : v;

    /// <summary>Summary statistics of a histogram of microseconds, in milliseconds.</summary>
    public static Dictionary<string, double> Milliseconds(HistogramBase h)
    {
        if (h.TotalCount == 0) return [];
        double Ms(long us) => us / 1000.0;
        long min = h.LowestEquivalentValue(h.RecordedValues().First().ValueIteratedTo);
        return new Dictionary<string, double>
        {
            ["min"] = Ms(min),
            ["mean"] = h.GetMean() / 1000.0,
            ["stdev"] = h.GetStdDeviation() / 1000.0,
            ["p50"] = Ms(h.GetValueAtPercentile(50)),
            ["p90"] = Ms(h.GetValueAtPercentile(90)),
            ["p95"] = Ms(h.GetValueAtPercentile(95)),
            ["p99"] = Ms(h.GetValueAtPercentile(99)),
            ["p999"] = Ms(h.GetValueAtPercentile(99.9)),
            ["max"] = Ms(h.GetMaxValue()),
        };
    }

    /// <summary>Counts in <paramref name="bins"/> logarithmic bins from the fastest to the slowest call.</summary>
    public static List<HistogramBin> Bins(HistogramBase h, int bins = 16)
    {
        if (h.TotalCount == 0) return [];
        var values = h.RecordedValues().Select(v => (Value: Math.Max(1, v.ValueIteratedTo), Count: v.CountAtValueIteratedTo)).ToList();
        double lo = values[0].Value, hi = values[^1].Value;
        if (hi <= lo * 1.0001) return [new HistogramBin(lo / 1000.0, hi / 1000.0, h.TotalCount)];
        var edges = Enumerable.Range(0, bins + 1).Select(i => lo * Math.Pow(hi / lo, (double)i / bins)).ToArray();
        var counts = new long[bins];
        foreach (var (value, count) in values)
            counts[Math.Clamp(Array.FindIndex(edges, 1, e => value <= e * 1.0000001) - 1, 0, bins - 1)] += count;
        return Enumerable.Range(0, bins).Select(i => new HistogramBin(edges[i] / 1000.0, edges[i + 1] / 1000.0, counts[i])).ToList();
    }

    public static List<PercentilePoint> Curve(HistogramBase h) => h.TotalCount == 0 ? [] :
        h.Percentiles(5).Select(p => new PercentilePoint(p.PercentileLevelIteratedTo, p.ValueIteratedTo / 1000.0))
            .DistinctBy(p => p.Percentile).ToList();

    public string Describe()
    {
        var s = new StringBuilder($"{Method}");
        if (Model is not null) s.Append($" {Model}");
        s.Append($" at {Target}, ");
        s.Append(Mode == "open" ? $"open loop at {RpsTarget:0.##} rps (at most {Concurrency} in flight)" : $"closed loop, {Concurrency} workers");
        if (Ramp != "none") s.Append($", {Ramp} ramp");
        s.Append($", {Connections} connection{(Connections == 1 ? "" : "s")}");
        if (Batch > 1) s.Append($", {Batch} rows per request");
        return s.ToString();
    }
}
