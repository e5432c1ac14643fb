// A client that sends a gRPC request slowly (docs/security.md, "A message that does not come"): a Predict whose prefix
// declares DECLARED_BYTES, then BYTES_PER_SECOND of body each second for SECONDS; prints how and when the call ended.
// Usage: dotnet run bench/slow_sender.cs -- HOST:PORT DECLARED_BYTES BYTES_PER_SECOND SECONDS
// Watch the server's jacservice_call_memory_held_bytes beside it.
using System.Buffers.Binary;
using System.Net;

var target = args[0];
long declared = long.Parse(args[1]);
int perSecond = int.Parse(args[2]);
int seconds = int.Parse(args[3]);
using var http = new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
var started = DateTime.UtcNow;
string At() => $"{(DateTime.UtcNow - started).TotalSeconds:F1} s";
var request = new HttpRequestMessage(HttpMethod.Post, $"http://{target}/jacservice.v1.JacobianService/Predict")
{
    Content = new SlowBody(declared, perSecond, seconds),
    Version = HttpVersion.Version20,
    VersionPolicy = HttpVersionPolicy.RequestVersionExact,
};
request.Content.Headers.ContentType = new("application/grpc");
request.Headers.TryAddWithoutValidation("te", "trailers");
try
{
    using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
    await response.Content.ReadAsByteArrayAsync();
    var grpc = response.Headers.Concat(response.TrailingHeaders).Where(h => h.Key.StartsWith("grpc-", StringComparison.Ordinal))
        .Select(h => $"{h.Key}={string.Join(';', h.Value)}");
    Console.WriteLine($"{At()}: answered, {string.Join(", ", grpc)}");
}
catch (HttpRequestException e)
{
    Console.WriteLine($"{At()}: {e.Message} {e.InnerException?.Message}");
}

sealed class SlowBody(long declared, int perSecond, int seconds) : HttpContent
{
    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
    {
        var prefix = new byte[5];
        BinaryPrimitives.WriteUInt32BigEndian(prefix.AsSpan(1), (uint)declared);
        await stream.WriteAsync(prefix);
        await stream.FlushAsync();
        for (int s = 0; s < seconds; s++)
        {
            await Task.Delay(1000);
            if (perSecond == 0) continue;
            await stream.WriteAsync(new byte[perSecond]);
            await stream.FlushAsync();
        }
    }

    protected override bool TryComputeLength(out long length)
    {
        length = -1;
        return false;
    }
}
