using System.Diagnostics;
using Grpc.Core;
using JacService.Client;
using JacService.Protos.V1;

namespace JacService.Bench;

/// <summary>
/// Calls of every kind the service answers, in turn, through the client library: Predict, Jacobian, BatchJacobian,
/// Jvp and Vjp of mlp_tanh (32 -> 256 -> 256 -> 16) and BatchHessian and BatchLaplacian of pinn (2 -> 1), on random
/// inputs made once. Each call is counted with its kind, status and latency.
/// </summary>
internal sealed class MixedTraffic
{
    public static readonly string[] Kinds = ["predict", "jacobian", "batch_jacobian", "jvp", "vjp", "hessian", "laplacian"];

    /// <summary>Rows of the batched calls.</summary>
    public const int Rows = 16;

    private readonly JacServiceClient _client;
    private readonly Dictionary<string, FloatTensor> _mlpBatch, _mlpSample, _pinnBatch, _cotangents;
    private readonly FloatTensor _tangents;
    private long _next;

    public MixedTraffic(JacServiceClient client, TimeSpan timeout)
    {
        _client = client;
        Timeout = timeout;
        var rng = new Random(42);
        FloatTensor Random(params long[] shape)
        {
            var data = new float[shape.Aggregate(1L, (a, b) => a * b)];
            for (int i = 0; i < data.Length; i++) data[i] = (float)(rng.NextDouble() * 2 - 1);
            return new FloatTensor(data, shape);
        }
        _mlpBatch = new() { ["x"] = Random(Rows, 32) };
        _mlpSample = new() { ["x"] = Random(32) };
        _tangents = Random(Rows, 32);
        _cotangents = new() { ["y"] = Random(Rows, 16) };
        _pinnBatch = new() { ["xt"] = Random(Rows, 2) };
    }

    public TimeSpan Timeout { get; }

    /// <summary>Calls answered and failed, per kind and per status code ("OK" for answers).</summary>
    public Counts Totals { get; } = new();

    /// <summary>Sends the next call in turn; never throws: a failure is counted, and returned as its status.</summary>
    public async Task<(int Kind, StatusCode Status, double Ms)> CallAsync(CancellationToken cancellationToken = default)
    {
        int kind = (int)(Interlocked.Increment(ref _next) % Kinds.Length);
        long start = Stopwatch.GetTimestamp();
        StatusCode status = StatusCode.OK;
        try
        {
            await (kind switch
            {
                0 => _client.PredictAsync("mlp_tanh", _mlpBatch, timeout: Timeout, cancellationToken: cancellationToken),
                1 => _client.JacobianAsync("mlp_tanh", _mlpSample, timeout: Timeout, cancellationToken: cancellationToken),
                2 => _client.BatchJacobianAsync("mlp_tanh", _mlpBatch, timeout: Timeout, cancellationToken: cancellationToken),
                3 => _client.JvpAsync("mlp_tanh", _mlpBatch, _tangents, timeout: Timeout, cancellationToken: cancellationToken),
                4 => _client.VjpAsync("mlp_tanh", _mlpBatch, _cotangents, timeout: Timeout, cancellationToken: cancellationToken),
                5 => _client.HessianAsync("pinn", _pinnBatch, timeout: Timeout, cancellationToken: cancellationToken),
                _ => (Task)_client.LaplacianAsync("pinn", _pinnBatch, timeout: Timeout, cancellationToken: cancellationToken),
            });
        }
        catch (RpcException e)
        {
            status = e.StatusCode;
        }
        double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        Totals.Add(Kinds[kind], status);
        return (kind, status, ms);
    }

    /// <summary>Thread-safe counts of (kind, status).</summary>
    public sealed class Counts
    {
        private readonly Dictionary<(string Kind, StatusCode Status), long> _counts = [];

        public void Add(string kind, StatusCode status)
        {
            lock (_counts) _counts[(kind, status)] = _counts.GetValueOrDefault((kind, status)) + 1;
        }

        public long Ok
        {
            get { lock (_counts) return _counts.Where(c => c.Key.Status == StatusCode.OK).Sum(c => c.Value); }
        }

        public long Failed
        {
            get { lock (_counts) return _counts.Where(c => c.Key.Status != StatusCode.OK).Sum(c => c.Value); }
        }

        /// <summary>"predict 1234, jacobian 1230, ...; failed: UNAVAILABLE 3 (jacobian 2, vjp 1)".</summary>
        public string Describe()
        {
            lock (_counts)
            {
                var ok = string.Join(", ", Kinds.Select(k => $"{k} {_counts.GetValueOrDefault((k, StatusCode.OK))}"));
                var failures = _counts.Where(c => c.Key.Status != StatusCode.OK).GroupBy(c => c.Key.Status)
                    .Select(g => $"{g.Key} {g.Sum(c => c.Value)} ({string.Join(", ", g.Select(c => $"{c.Key.Kind} {c.Value}"))})");
                return $"{ok}; failed: {(failures.Any() ? string.Join("; ", failures) : "none")}";
            }
        }
    }
}
