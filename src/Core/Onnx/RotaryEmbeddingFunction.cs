using static JacService.Core.Onnx.FunctionWriter;

namespace JacService.Core.Onnx;

/// <summary>
/// RotaryEmbedding (opset 23): rotates pairs of each head's first rotary_embedding_dim features by the angles of
/// cos_cache and sin_cache, taken at position_ids where given. Pairs are the two halves of those features, or
/// neighbours where interleaved. X is [batch, heads, sequence, head size], or [batch, sequence, heads · head size]
/// with num_heads; the expansion works on [batch, sequence, heads, head size] as the definition does.
/// </summary>
internal static class RotaryEmbeddingFunction
{
    public static void Expand(FunctionWriter w)
    {
        w.Require("X", "cos_cache", "sin_cache");
        string x = w.Input(0), cos = w.Input(1), sin = w.Input(2), positions = w.Input(3);
        long heads = w.Int("num_heads", 0), rotated = w.Int("rotary_embedding_dim", 0);
        bool interleaved = w.Int("interleaved", 0) != 0;
        bool flat = w.RankOf(x) is { } rank ? rank == 3 : heads > 0;
        if (flat && heads <= 0) throw w.Refuse($"a 3-D input needs num_heads above 0; the node has {heads}");
        if (rotated < 0 || rotated % 2 != 0) throw w.Refuse($"rotary_embedding_dim {rotated} is not an even size (0 for the whole head)");

        string x4 = flat
            ? w.Op("Reshape", [x, w.Ints(0, 0, heads, -1)])
            : w.Op("Transpose", [x], Attr("perm", [0L, 2, 1, 3]));
        if (positions.Length > 0)
        {
            cos = w.Op("Gather", [cos, positions]);
            sin = w.Op("Gather", [sin, positions]);
        }
        // [B, S, half] against [B, S, heads, half].
        cos = w.Op("Unsqueeze", [cos, w.Ints(2)]);
        sin = w.Op("Unsqueeze", [sin, w.Ints(2)]);

        // The pairs as an axis of two: [.., 2, half] for halves, [.., half, 2] for neighbours.
        string part = rotated > 0 ? w.Op("Slice", [x4, w.Ints(0), w.Ints(rotated), w.Ints(-1)]) : x4;
        long pairAxis = interleaved ? 4 : 3;
        string pairs = w.Op("Reshape", [part, w.Ints(interleaved ? [0, 0, 0, -1, 2] : [0, 0, 0, 2, -1])]);
        string first = w.Op("Gather", [pairs, w.IntScalar(0)], Attr("axis", pairAxis));
        string second = w.Op("Gather", [pairs, w.IntScalar(1)], Attr("axis", pairAxis));
        string real = w.Op("Sub", [w.Op("Mul", [cos, first]), w.Op("Mul", [sin, second])]);
        string imaginary = w.Op("Add", [w.Op("Mul", [sin, first]), w.Op("Mul", [cos, second])]);
        string turned = w.Op("Reshape", [w.Op("Concat", [w.Op("Unsqueeze", [real, w.Ints(pairAxis)]), w.Op("Unsqueeze", [imaginary, w.Ints(pairAxis)])],
            Attr("axis", pairAxis)), w.Op("Shape", [part])]);
        if (rotated > 0) turned = w.Op("Concat", [turned, w.Op("Slice", [x4, w.Ints(rotated), w.Ints(long.MaxValue), w.Ints(-1)])], Attr("axis", -1));

        if (flat) w.Into(w.Output(0), "Reshape", [turned, w.Op("Shape", [x])]);
        else w.Into(w.Output(0), "Transpose", [turned], Attr("perm", [0L, 2, 1, 3]));
    }
}
