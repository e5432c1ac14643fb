using System.Text.Json;

namespace JacService.Testing;

/// <summary>The committed fixtures: ONNX files exported by torch and float64 references from functorch.</summary>
public static class Fixtures
{
    public static string Root { get; } = FindRoot();

    public static string ModelsDir => Path.Combine(Root, "tests", "fixtures", "models");

    public static IEnumerable<string> Names =>
        Directory.GetFiles(Path.Combine(Root, "tests", "fixtures", "reference"), "*.json")
            .Select(Path.GetFileNameWithoutExtension).Order()!;

    public static string ModelPath(string name) => Path.Combine(ModelsDir, name, "1", "model.onnx");

    /// <summary>The reference of <paramref name="name"/>, from the committed ones or from <paramref name="directory"/>.</summary>
    public static Reference Load(string name, string? directory = null)
    {
        directory ??= Path.Combine(Root, "tests", "fixtures", "reference");
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, name + ".json")));
        var r = doc.RootElement;
        return new Reference(
            name,
            Tensors(r.GetProperty("inputs")),
            Tensors(r.GetProperty("outputs")),
            r.GetProperty("jacobians").EnumerateObject().ToDictionary(w => w.Name, w => Tensors(w.Value)),
            r.GetProperty("jvp").EnumerateObject().ToDictionary(w => w.Name, w => new JvpReference(
                Tensor(w.Value.GetProperty("tangents")), Tensors(w.Value.GetProperty("outputs")))),
            r.GetProperty("vjp").EnumerateObject().ToDictionary(w => w.Name, w => new VjpReference(
                Tensors(w.Value.GetProperty("cotangents")), Tensor(w.Value.GetProperty("result")))),
            r.TryGetProperty("hessians", out var hessians) ? PerWrt(hessians) : null,
            r.TryGetProperty("laplacians", out var laplacians) ? PerWrt(laplacians) : null,
            r.TryGetProperty("laplacians_axes", out var axes)
                ? new LaplacianAxesReference(
                    axes.GetProperty("axes").EnumerateObject().ToDictionary(w => w.Name, w => w.Value.EnumerateArray().Select(a => a.GetInt32()).ToArray()),
                    PerWrt(axes.GetProperty("values")))
                : null);
    }

    /// <summary>The models whose reference has second-order keys (every model but the convolutional ones, small_cnn and conv_decoder, today).</summary>
    public static IEnumerable<string> SecondOrderNames => Names.Where(HasSecondOrder);

    /// <summary>Whether the reference of <paramref name="name"/> has second-order keys (without converting its numbers).</summary>
    public static bool HasSecondOrder(string name)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, "tests", "fixtures", "reference", name + ".json")));
        return doc.RootElement.TryGetProperty("hessians", out _);
    }

    private static Dictionary<string, Dictionary<string, RefTensor>> PerWrt(JsonElement e) =>
        e.EnumerateObject().ToDictionary(w => w.Name, w => Tensors(w.Value));

    private static Dictionary<string, RefTensor> Tensors(JsonElement e) => e.EnumerateObject().ToDictionary(p => p.Name, p => Tensor(p.Value));

    private static RefTensor Tensor(JsonElement e) => new(
        e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray(),
        e.GetProperty("data").EnumerateArray().Select(x => x.GetDouble()).ToArray());

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "JacService.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("JacService.sln not found above " + AppContext.BaseDirectory);
    }
}

public sealed record RefTensor(long[] Shape, double[] Data)
{
    public float[] Floats => Data.Select(d => (float)d).ToArray();

    /// <summary>Sample <paramref name="b"/> without the batch axis.</summary>
    public RefTensor Sample(int b)
    {
        long per = Data.Length / Shape[0];
        return new RefTensor(Shape[1..], Data.Skip((int)(b * per)).Take((int)per).ToArray());
    }

    /// <summary>The first <paramref name="samples"/> samples, keeping the batch axis.</summary>
    public RefTensor Take(int samples)
    {
        long per = Data.Length / Shape[0];
        return new RefTensor([samples, .. Shape[1..]], Data.Take((int)(samples * per)).ToArray());
    }
}

/// <summary>
/// A reference file (tests/fixtures/README.md, "Reference format"). <see cref="Jacobians"/> is [wrt][output] and serves
/// forward and reverse mode alike; <see cref="Jvp"/> and <see cref="Vjp"/> are keyed by wrt input. The second-order
/// references are null where the file has none (small_cnn): <see cref="Hessians"/> [wrt][output] is
/// [S] ++ out ++ in ++ in for the first S samples (S = Shape[0], fewer than the batch for wide_classifier);
/// <see cref="Laplacians"/> [wrt][output] is [B] ++ out, the trace over every element of wrt; <see cref="LaplaciansAxes"/>
/// the trace over a fixed proper subset of wrt's flat indices.
/// </summary>
public sealed record Reference(
    string Model,
    Dictionary<string, RefTensor> Inputs,
    Dictionary<string, RefTensor> Outputs,
    Dictionary<string, Dictionary<string, RefTensor>> Jacobians,
    Dictionary<string, JvpReference> Jvp,
    Dictionary<string, VjpReference> Vjp,
    Dictionary<string, Dictionary<string, RefTensor>>? Hessians = null,
    Dictionary<string, Dictionary<string, RefTensor>>? Laplacians = null,
    LaplacianAxesReference? LaplaciansAxes = null);

/// <summary>
/// The <c>laplacians_axes</c> entry of a reference file: per wrt input, the flat indices of one sample that are summed
/// (ascending; <c>[0]</c>, the x of xt, for pinn) and, per wrt and output, the partial traces [B] ++ out.
/// </summary>
public sealed record LaplacianAxesReference(
    Dictionary<string, int[]> Axes,
    Dictionary<string, Dictionary<string, RefTensor>> Values);

public static class Compare
{
    /// <summary>Max abs error within tolerance × the largest reference entry, shapes equal.</summary>
    public static void Close(RefTensor expected, long[] shape, IReadOnlyList<float> actual, double tolerance, string what)
    {
        Assert.True(expected.Shape.SequenceEqual(shape), $"{what}: shape [{string.Join(",", shape)}], expected [{string.Join(",", expected.Shape)}]");
        Assert.Equal(expected.Data.Length, actual.Count);
        double scale = Math.Max(expected.Data.Max(Math.Abs), 1e-12);
        double worst = 0;
        for (int i = 0; i < actual.Count; i++) worst = Math.Max(worst, Math.Abs(actual[i] - expected.Data[i]));
        Assert.True(worst <= tolerance * scale, $"{what}: max abs error {worst:E3} > {tolerance} x {scale:E3}");
    }
}
