using JacService.Client;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>Reference tensors as the client library's types, and typed clients for a test server.</summary>
internal static class ClientTesting
{
    public const double Tolerance = 1e-4;

    public static JacServiceClient ClientFor(ServerProcess server, Action<JacServiceClientOptions>? configure = null) =>
        ClientFor($"http://{server.Target}", configure);

    public static JacServiceClient ClientFor(string address, Action<JacServiceClientOptions>? configure = null)
    {
        var options = new JacServiceClientOptions { Address = new Uri(address) };
        configure?.Invoke(options);
        return new JacServiceClient(new Protos.V1.JacobianService.JacobianServiceClient(JacServiceChannel.Create(options)), options);
    }

    public static FloatTensor ToTensor(RefTensor t) => new(t.Floats, t.Shape);

    public static Dictionary<string, FloatTensor> Inputs(Reference r) => r.Inputs.ToDictionary(p => p.Key, p => ToTensor(p.Value));

    public static Dictionary<string, FloatTensor> SampleInputs(Reference r, int b) =>
        r.Inputs.ToDictionary(p => p.Key, p => ToTensor(p.Value.Sample(b)));

    /// <summary>The reference's samples repeated to <paramref name="rows"/> rows: row r is sample r mod B.</summary>
    public static Dictionary<string, FloatTensor> TiledInputs(Reference r, int rows) => r.Inputs.ToDictionary(p => p.Key, p =>
    {
        var floats = p.Value.Floats;
        int per = floats.Length / (int)p.Value.Shape[0];
        var data = new float[rows * per];
        for (int row = 0; row < rows; row++) Array.Copy(floats, row % p.Value.Shape[0] * per, data, row * per, per);
        return new FloatTensor(data, [rows, .. p.Value.Shape[1..]]);
    });

    public static void Close(RefTensor expected, FloatTensor actual, string what) =>
        Compare.Close(expected, actual.Shape, actual.ToArray(), Tolerance, what);

    /// <summary>Every row of a tiled result against the reference sample it repeats.</summary>
    public static void CloseTiled(RefTensor expected, FloatTensor actual, string what)
    {
        long batch = expected.Shape[0];
        for (int row = 0; row < actual.Shape[0]; row++)
            Compare.Close(expected.Sample((int)(row % batch)), actual.Row(row).Shape, actual.Row(row).ToArray(), Tolerance, $"{what} row {row}");
    }
}
