using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json.Nodes;
using Grpc.Core;
using JacService.Client;

namespace JacService.Jac.Load;

/// <summary>
/// One call of the Open Inference Protocol's REST infer (docs/open-inference.md), the same request every time: the inputs
/// as bytes after the JSON and every output asked for as bytes (Triton's binary tensor data extension, as tritonclient.http
/// sends it), asking for the Jacobian where <paramref name="jacobian"/> is given. At --timeout the call is abandoned, which
/// closes its connection and so cancels it on the server too. The answer is read whole and dropped; an HTTP error is
/// reported as the gRPC status it stands for, so the report counts both bindings alike.
/// </summary>
internal sealed class RestSender(Uri restUrl, Metadata? credentials, string model, string version, IReadOnlyDictionary<string, FloatTensor> inputs,
    RestSender.Jacobian? jacobian) : IAsyncDisposable
{
    /// <summary>What a Jacobian call asks for: the input (empty: the only float one), the outputs (none: all) and the mode.</summary>
    public sealed record Jacobian(string Wrt, string[] Of, string Mode);

    // HTTP/1.1 carries one call per connection at a time: the pool opens as many as there are calls in flight.
    private readonly HttpClient _http = Client(restUrl, credentials);
    private readonly string _path = version.Length > 0 ? $"/v2/models/{model}/versions/{version}/infer" : $"/v2/models/{model}/infer";
    private readonly (byte[] Body, int JsonLength) _request = Body(inputs, jacobian);

    public async Task Send(CallOptions options)
    {
        using var cancellation = CancellationTokenSource.CreateLinkedTokenSource(options.CancellationToken);
        if (options.Deadline is { } deadline) cancellation.CancelAfter(TimeSpan.FromTicks(Math.Max(0, (deadline - DateTime.UtcNow).Ticks)));
        using var request = new HttpRequestMessage(HttpMethod.Post, _path) { Content = new ByteArrayContent(_request.Body) };
        request.Content.Headers.ContentType = new("application/octet-stream");
        request.Content.Headers.Add("Inference-Header-Content-Length", _request.JsonLength.ToString(System.Globalization.CultureInfo.InvariantCulture));
        try
        {
            using var response = await _http.SendAsync(request, cancellation.Token);
            byte[] answer = await response.Content.ReadAsByteArrayAsync(cancellation.Token);
            if (!response.IsSuccessStatusCode)
                throw new RpcException(new Status(StatusOf(response.StatusCode), ErrorOf(answer, response.StatusCode)));
        }
        catch (OperationCanceledException) when (!options.CancellationToken.IsCancellationRequested)
        {
            throw new RpcException(new Status(StatusCode.DeadlineExceeded, "no answer within --timeout"));
        }
        catch (HttpRequestException e)
        {
            throw new RpcException(new Status(StatusCode.Unavailable, $"client: {e.Message}"));
        }
    }

    /// <summary>The same credentials (--token, --api-key) as the gRPC calls carry, as the same headers.</summary>
    private static HttpClient Client(Uri restUrl, Metadata? credentials)
    {
        var http = new HttpClient { BaseAddress = restUrl, Timeout = System.Threading.Timeout.InfiniteTimeSpan };
        foreach (var entry in credentials ?? []) http.DefaultRequestHeaders.TryAddWithoutValidation(entry.Key, entry.Value);
        return http;
    }

    public ValueTask DisposeAsync()
    {
        _http.Dispose();
        return ValueTask.CompletedTask;
    }

    private static (byte[] Body, int JsonLength) Body(IReadOnlyDictionary<string, FloatTensor> inputs, RestSender.Jacobian? jacobian)
    {
        var parameters = new JsonObject { ["binary_data_output"] = true };
        if (jacobian is not null)
        {
            parameters["jacservice.derivative"] = "jacobian";
            if (jacobian.Wrt.Length > 0) parameters["jacservice.wrt"] = jacobian.Wrt;
            if (jacobian.Of.Length > 0) parameters["jacservice.of"] = string.Join(",", jacobian.Of);
            if (jacobian.Mode != "auto") parameters["jacservice.mode"] = jacobian.Mode;
        }
        var json = new JsonObject
        {
            ["inputs"] = new JsonArray([.. inputs.Select(p => (JsonNode)new JsonObject
            {
                ["name"] = p.Key,
                ["shape"] = new JsonArray([.. p.Value.Shape.Select(d => (JsonNode)d)]),
                ["datatype"] = "FP32",
                ["parameters"] = new JsonObject { ["binary_data_size"] = 4 * p.Value.Data.Length },
            })]),
            ["parameters"] = parameters,
        };
        byte[] head = Encoding.UTF8.GetBytes(json.ToJsonString());
        return ([.. head, .. inputs.Values.SelectMany(t => MemoryMarshal.AsBytes(t.Span).ToArray())], head.Length);
    }

    /// <summary>The gRPC status an HTTP status stands for, as the server maps them the other way (RestError).</summary>
    private static StatusCode StatusOf(HttpStatusCode status) => status switch
    {
        HttpStatusCode.BadRequest or HttpStatusCode.UnsupportedMediaType => StatusCode.InvalidArgument,
        HttpStatusCode.Unauthorized => StatusCode.Unauthenticated,
        HttpStatusCode.Forbidden => StatusCode.PermissionDenied,
        HttpStatusCode.NotFound => StatusCode.NotFound,
        HttpStatusCode.RequestTimeout or HttpStatusCode.RequestEntityTooLarge or HttpStatusCode.TooManyRequests => StatusCode.ResourceExhausted,
        HttpStatusCode.ServiceUnavailable => StatusCode.Unavailable,
        HttpStatusCode.GatewayTimeout => StatusCode.DeadlineExceeded,
        HttpStatusCode.InternalServerError => StatusCode.Internal,
        _ => StatusCode.Unknown,
    };

    private static string ErrorOf(byte[] answer, HttpStatusCode status)
    {
        try
        {
            return (string?)JsonNode.Parse(answer)?["error"] ?? $"HTTP {(int)status}";
        }
        catch (System.Text.Json.JsonException)
        {
            return $"HTTP {(int)status}";
        }
    }
}
