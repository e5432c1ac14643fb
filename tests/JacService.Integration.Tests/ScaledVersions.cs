using System.Runtime.InteropServices;
using Google.Protobuf;
using JacService.Core.Onnx.Proto;

namespace JacService.Testing;

/// <summary>
/// Versions of the fixture mlp_tanh (x[32] → Gemm → Tanh → Gemm → Tanh → Gemm → y[16]) whose every weight differs from
/// version to version while the function stays known exactly: version k computes k · f(x), f the fixture's function, so
/// the committed float64 references times k are references for every version, independent of the server and of ONNX
/// Runtime. (Linked into the benchmark too, so it depends on nothing but the ONNX protobuf classes.) The hidden units of both tanh layers are permuted by a permutation seeded by k (rows of the Gemm before,
/// columns of the Gemm after: the same function, other bytes in every initializer), and the output Gemm's weight and
/// bias are multiplied by k. A server that kept any tensor of an earlier version would answer garbage, and one that
/// answered from another version than it reports would be off by a factor (k+1)/k, far beyond float tolerance.
/// </summary>
public static class ScaledVersions
{
    /// <summary>The fixture the versions are made from.</summary>
    public const string Fixture = "mlp_tanh";

    /// <summary>What version k's outputs and Jacobians are, times the fixture's.</summary>
    public static double Factor(int version) => version;

    /// <summary>
    /// Writes MODEL_FOLDER/&lt;version&gt;/model.onnx made from <paramref name="fixture"/> (the path of mlp_tanh's
    /// model.onnx), then (unless told not to) the COMPLETE marker. The version folder.
    /// </summary>
    public static string Write(string fixture, string modelFolder, int version, bool complete = true)
    {
        var folder = Path.Combine(modelFolder, version.ToString());
        Directory.CreateDirectory(folder);
        File.WriteAllBytes(Path.Combine(folder, "model.onnx"), Bytes(fixture, version));
        // The marker after the model, as a copy script would: the server may take the folder as soon as it sees it.
        if (complete) File.WriteAllBytes(Path.Combine(folder, "COMPLETE"), []);
        return folder;
    }

    /// <summary>The ONNX bytes of version k (k ≥ 1).</summary>
    public static byte[] Bytes(string fixture, int version)
    {
        if (version < 1) throw new ArgumentOutOfRangeException(nameof(version), version, "versions are positive");
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(fixture));
        var graph = model.Graph;
        var ops = graph.Node.Select(n => n.OpType).ToArray();
        if (!ops.SequenceEqual(["Gemm", "Tanh", "Gemm", "Tanh", "Gemm"]))
            throw new InvalidDataException($"{fixture} is expected to be Gemm, Tanh, Gemm, Tanh, Gemm; it is {string.Join(", ", ops)}");
        var gemms = graph.Node.Where(n => n.OpType == "Gemm").ToArray();
        foreach (var gemm in gemms)
            if (gemm.Attribute.FirstOrDefault(a => a.Name == "transB")?.I != 1)
                throw new InvalidDataException($"{gemm.Name}: the permutation below assumes weights stored [out, in] (transB = 1)");

        var initializers = graph.Initializer.ToDictionary(t => t.Name);
        var rng = new Random(version);
        for (int layer = 0; layer + 1 < gemms.Length; layer++)
        {
            var (weight, bias, next) = (initializers[gemms[layer].Input[1]], initializers[gemms[layer].Input[2]], initializers[gemms[layer + 1].Input[1]]);
            int units = (int)weight.Dims[0];
            var order = Enumerable.Range(0, units).ToArray();
            rng.Shuffle(order);
            // Unit j of the new layer is unit order[j] of the old one: its row of weights and its bias move to j, and the
            // next layer reads it from column j.
            Set(weight, PermuteRows(Floats(weight), order, (int)weight.Dims[1]));
            Set(bias, PermuteRows(Floats(bias), order, 1));
            Set(next, PermuteColumns(Floats(next), order, (int)next.Dims[0]));
        }
        var last = gemms[^1];
        foreach (var name in new[] { last.Input[1], last.Input[2] })
            Set(initializers[name], Floats(initializers[name]).Select(w => (float)(w * Factor(version))).ToArray());
        return model.ToByteArray();
    }

    private static float[] Floats(TensorProto t)
    {
        if (t.DataType != (int)TensorProto.Types.DataType.Float || t.RawData.IsEmpty)
            throw new InvalidDataException($"initializer {t.Name}: expected float raw_data");
        return MemoryMarshal.Cast<byte, float>(t.RawData.Span).ToArray();
    }

    private static void Set(TensorProto t, float[] values) =>
        t.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan()));

    private static float[] PermuteRows(float[] values, int[] order, int rowLength)
    {
        var result = new float[values.Length];
        for (int j = 0; j < order.Length; j++)
            Array.Copy(values, order[j] * rowLength, result, j * rowLength, rowLength);
        return result;
    }

    private static float[] PermuteColumns(float[] values, int[] order, int rows)
    {
        int columns = order.Length;
        var result = new float[values.Length];
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < columns; j++)
                result[r * columns + j] = values[r * columns + order[j]];
        return result;
    }
}
