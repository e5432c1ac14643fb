using System.Buffers.Binary;
using System.Net;
using Google.Protobuf;

namespace JacService.Integration.Tests;

/// <summary>gRPC calls made with HttpClient, for tests that control how a message is sent or its answer read.</summary>
public static class RawGrpc
{
    /// <summary>A call of JacobianService's <paramref name="method"/> over HTTP/2 whose body is <paramref name="body"/>, a gRPC frame.</summary>
    public static HttpRequestMessage Request(ServerProcess server, string method, HttpContent body)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, $"http://{server.Target}/jacservice.v1.JacobianService/{method}")
        {
            Content = body,
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        request.Content.Headers.ContentType = new("application/grpc");
        request.Headers.TryAddWithoutValidation("te", "trailers");
        return request;
    }

    /// <summary><paramref name="message"/> as one uncompressed gRPC frame.</summary>
    public static ByteArrayContent Frame(IMessage message)
    {
        byte[] body = new byte[5 + message.CalculateSize()];
        BinaryPrimitives.WriteUInt32BigEndian(body.AsSpan(1), (uint)(body.Length - 5));
        message.WriteTo(body.AsSpan(5));
        return new ByteArrayContent(body);
    }
}
