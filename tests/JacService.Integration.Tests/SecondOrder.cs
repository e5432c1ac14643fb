using System.Text.Json.Nodes;
using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>
/// What the second-order tests share: requests built from the fixture references, Hessians read as [rows, n, n], and a
/// closeness check against an expected array with an explicit scale.
/// </summary>
internal static class SecondOrder
{
    public static BatchHessianRequest HessianRequest(string model, Reference reference, bool includeJacobian = false, string wrt = "",
        params string[] of)
    {
        var request = new BatchHessianRequest { Model = model, Wrt = wrt, IncludeJacobian = includeJacobian, Of = { of } };
        foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ServingTests.ToProto(t);
        return request;
    }

    public static BatchLaplacianRequest LaplacianRequest(string model, Reference reference, long[]? axes = null, bool includeJacobian = false,
        string wrt = "", params string[] of)
    {
        var request = new BatchLaplacianRequest { Model = model, Wrt = wrt, IncludeJacobian = includeJacobian, Of = { of }, Axes = { axes ?? [] } };
        foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ServingTests.ToProto(t);
        return request;
    }

    public static long Product(IEnumerable<long> dims) => dims.Aggregate(1L, (p, d) => p * d);

    /// <summary>The trace of each [n, n] block of a Hessian over <paramref name="axes"/>: one value per (sample, output element).</summary>
    public static double[] Trace(Tensor hessian, long n, IReadOnlyList<long> axes)
    {
        long rows = hessian.Data.Count / (n * n);
        var trace = new double[rows];
        for (long r = 0; r < rows; r++)
            foreach (var a in axes) trace[r] += hessian.Data[(int)(r * n * n + a * n + a)];
        return trace;
    }

    /// <summary>Max |actual - expected| within tolerance × scale (scale: the size of what is compared, stated by the caller).</summary>
    public static void Close(IReadOnlyList<double> expected, IReadOnlyList<float> actual, double tolerance, double scale, string what)
    {
        Assert.True(expected.Count == actual.Count, $"{what}: {actual.Count} values, expected {expected.Count}");
        double worst = 0;
        int at = 0;
        for (int i = 0; i < actual.Count; i++)
        {
            double e = Math.Abs(actual[i] - expected[i]);
            if (!(e <= worst)) (worst, at) = (e, i);
        }
        Assert.True(worst <= tolerance * scale, $"{what}: max abs error {worst:E3} at flat index {at} > {tolerance} x {scale:E3}");
    }

    public static double MaxAbs(IEnumerable<float> values) => values.Select(v => (double)Math.Abs(v)).DefaultIfEmpty(0).Max();

    /// <summary>
    /// A second-order reference from tests/fixtures/reference/NAME.json when the file has it ("hessians", "laplacians",
    /// "laplacians_axes": {wrt: {output: tensor}}), else null. A tensor there is nested lists or {"shape", "data"}.
    /// </summary>
    public static RefTensor? OptionalReference(string model, string key, string wrt, string output)
    {
        var doc = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.Root, "tests", "fixtures", "reference", model + ".json")))!;
        return doc[key]?[wrt]?[output] is { } node ? ReadTensor(node) : null;
    }

    public static bool HasSecondOrderReferences(string model)
    {
        var doc = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.Root, "tests", "fixtures", "reference", model + ".json")))!.AsObject();
        return doc.ContainsKey("hessians") || doc.ContainsKey("laplacians") || doc.ContainsKey("laplacians_axes");
    }

    /// <summary>The axes of the file's "laplacians_axes" entry, if it has one.</summary>
    public static long[]? OptionalReferenceAxes(string model)
    {
        var doc = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.Root, "tests", "fixtures", "reference", model + ".json")))!;
        return doc["laplacians_axes"]?["axes"]?.AsArray().Select(a => a!.GetValue<long>()).ToArray();
    }

    private static RefTensor ReadTensor(JsonNode node)
    {
        if (node is JsonObject o)
            return new RefTensor(o["shape"]!.AsArray().Select(d => d!.GetValue<long>()).ToArray(),
                o["data"]!.AsArray().Select(d => d!.GetValue<double>()).ToArray());
        var shape = new List<long>();
        for (var n = node; n is JsonArray a; n = a.Count > 0 ? a[0] : null) shape.Add(((JsonArray)n).Count);
        var data = new List<double>();
        Flatten(node, data);
        return new RefTensor([.. shape], [.. data]);
    }

    private static void Flatten(JsonNode node, List<double> into)
    {
        if (node is JsonArray a) foreach (var x in a) Flatten(x!, into);
        else into.Add(node.GetValue<double>());
    }
}
