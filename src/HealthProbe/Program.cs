using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;

// Usage: JacService.HealthProbe [address] [service]
// Exit code 0 only when grpc.health.v1.Health/Check answers SERVING within the timeout; anything else is 1, so
// Docker marks the container unhealthy. The address defaults to the port the image listens on.
var address = args.Length > 0 ? args[0] : Environment.GetEnvironmentVariable("JACSERVICE_PROBE_ADDRESS") ?? "http://127.0.0.1:50051";
var service = args.Length > 1 ? args[1] : "";
var timeout = TimeSpan.FromSeconds(double.TryParse(Environment.GetEnvironmentVariable("JACSERVICE_PROBE_TIMEOUT_SECONDS"),
    System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var s) ? s : 3);

try
{
    using var channel = GrpcChannel.ForAddress(address);
    var reply = await new Health.HealthClient(channel).CheckAsync(
        new HealthCheckRequest { Service = service }, deadline: DateTime.UtcNow + timeout);
    Console.WriteLine($"{address} {(service == "" ? "(server)" : service)}: {reply.Status}");
    return reply.Status == HealthCheckResponse.Types.ServingStatus.Serving ? 0 : 1;
}
catch (RpcException e)
{
    Console.Error.WriteLine($"{address}: {e.StatusCode} {e.Status.Detail}");
    return 1;
}
catch (Exception e) when (e is ArgumentException or UriFormatException or InvalidOperationException)
{
    // A malformed address (no scheme, say) is a failed probe with a reason, not a crash with another exit code.
    Console.Error.WriteLine($"{address}: {e.Message}");
    return 1;
}
