using static JacService.Core.Onnx.FunctionWriter;

namespace JacService.Core.Onnx;

/// <summary>
/// Attention (opset 23): softmax(Q Kᵀ · scale + bias) V, with Q, K, V as [batch, heads, sequence, head size] or
/// [batch, sequence, heads · head size] (q_num_heads, kv_num_heads), grouped-query heads, a past key and value
/// concatenated before the new ones, a bool or additive mask, a causal mask aligned to the end of the past, and softcap.
/// Grouped queries are not served by repeating K and V: the query heads that share a key head are laid side by side as
/// one longer sequence ([B, Hkv, r · Sq, D]), which multiplies K and V as they are, and the scores are viewed back as
/// [B, Hq, Sq, Skv] for the mask and the softmax. softmax_precision changes nothing here: the engine computes in its
/// own type. nonpad_kv_seqlen (24) leaves each sample's keys past its length out, and without a past aligns the causal
/// triangle to that length. Refused: the diagnostic qk_matmul_output output.
/// </summary>
internal static class AttentionFunction
{
    public static void Expand(FunctionWriter w)
    {
        w.Require("Q", "K", "V");
        string q = w.Input(0), k = w.Input(1), v = w.Input(2), mask = w.Input(3), pastKey = w.Input(4), pastValue = w.Input(5), valid = w.Input(6);
        if (w.Output(3).Length > 0)
            throw w.Refuse("the output qk_matmul_output is not served (it is a diagnostic); export without it");
        if ((pastKey.Length > 0) != (pastValue.Length > 0))
            throw w.Refuse($"past_key and past_value come together; the node has {(pastKey.Length > 0 ? "past_key" : "past_value")} only");

        long qHeads = w.Int("q_num_heads", 0), kvHeads = w.Int("kv_num_heads", 0);
        bool flat = w.RankOf(q) is { } rank ? rank == 3 : qHeads > 0 || kvHeads > 0;
        if (flat && (qHeads <= 0 || kvHeads <= 0))
            throw w.Refuse($"3-D inputs need q_num_heads and kv_num_heads above 0; the node has {qHeads} and {kvHeads}");
        string q4 = flat ? Heads(w, q, qHeads) : q;
        string k4 = flat ? Heads(w, k, kvHeads) : k;
        string v4 = flat ? Heads(w, v, kvHeads) : v;
        string keys = pastKey.Length > 0 ? w.Into(w.Output(1), "Concat", [pastKey, k4], Attr("axis", 2)) : Named(w, 1, k4);
        string values = pastValue.Length > 0 ? w.Into(w.Output(2), "Concat", [pastValue, v4], Attr("axis", 2)) : Named(w, 2, v4);

        string scale = w.Float("scale") is { } given
            ? w.FloatLike(given, q)
            : w.Op("CastLike", [w.Op("Reciprocal", [w.Op("Sqrt", [w.Op("Cast", [w.ShapeOf(q4, 3, 4)], Attr("to", (long)ElementType.Float))])]), q]);

        // [B, Hq, Sq, D] as [B, Hkv, r·Sq, D]: query head h = g·r + j uses key head g.
        string grouped = w.Op("Reshape", [w.Op("Mul", [q4, scale]), Concat(w, w.ShapeOf(keys, 0, 2), w.Ints(-1), w.ShapeOf(q4, 3, 4))]);
        string scores = w.Op("MatMul", [grouped, w.Op("Transpose", [keys], Attr("perm", [0L, 1, 3, 2]))]);
        scores = w.Op("Reshape", [scores, Concat(w, w.ShapeOf(q4, 0, 3), w.ShapeOf(keys, 2, 3))]);

        // Before the mask, so that a masked score stays -inf.
        if (w.Float("softcap") is float cap && cap > 0)
        {
            string c = w.FloatLike(cap, q);
            scores = w.Op("Mul", [w.Op("Tanh", [w.Op("Div", [scores, c])]), c]);
        }
        if (Bias(w, mask, pastKey, valid, q4, keys) is { } bias) scores = w.Op("Add", [scores, bias]);

        string probabilities = w.Op("Softmax", [scores], Attr("axis", -1));
        probabilities = w.Op("Reshape", [probabilities, Concat(w, w.ShapeOf(keys, 0, 2), w.Ints(-1), w.ShapeOf(keys, 2, 3))]);
        string y = w.Op("MatMul", [probabilities, values]);
        if (!flat)
        {
            w.Into(w.Output(0), "Reshape", [y, Concat(w, w.ShapeOf(q4, 0, 3), w.ShapeOf(values, 3, 4))]);
            return;
        }
        y = w.Op("Reshape", [y, Concat(w, w.ShapeOf(q4, 0, 3), w.ShapeOf(values, 3, 4))]);
        w.Into(w.Output(0), "Reshape", [w.Op("Transpose", [y], Attr("perm", [0L, 2, 1, 3])), w.Ints(0, 0, -1)]);
    }

    /// <summary>[B, S, heads · size] as [B, heads, S, size].</summary>
    private static string Heads(FunctionWriter w, string x, long heads) =>
        w.Op("Transpose", [w.Op("Reshape", [x, w.Ints(0, 0, heads, -1)])], Attr("perm", [0L, 2, 1, 3]));

    /// <summary>The value, also written to the call's output <paramref name="o"/> where the model names it.</summary>
    private static string Named(FunctionWriter w, int o, string value) => w.Output(o).Length > 0 ? w.Into(w.Output(o), "Identity", [value]) : value;

    private static string Concat(FunctionWriter w, params string[] parts) => w.Op("Concat", parts, Attr("axis", 0));

    /// <summary>
    /// The additive bias of the mask, the causal triangle and the keys past each sample's nonpad_kv_seqlen, or null where
    /// the node has none of them.
    /// </summary>
    private static string? Bias(FunctionWriter w, string mask, string pastKey, string valid, string q4, string keys)
    {
        string? bias = null, zero = null, excluded = null;
        string Zero() => zero ??= w.FloatLike(0, q4);
        string Excluded() => excluded ??= w.FloatLike(double.NegativeInfinity, q4);
        if (mask.Length > 0)
        {
            bias = w.ElementTypeOf(mask) switch
            {
                (int)ElementType.Bool => w.Op("Where", [mask, Zero(), Excluded()]),
                (int)ElementType.Float or (int)ElementType.Double or (int)ElementType.Float16 => mask,
                null => throw w.Refuse($"the graph does not say whether attn_mask '{mask}' is bool or float; declare its type in value_info"),
                int other => throw w.Refuse($"attn_mask '{mask}' has ONNX element type {other}; expected bool or Q's float type"),
            };
            // A mask shorter than past and new keys together leaves the keys past its end out.
            if (pastKey.Length > 0)
            {
                string missing = w.Op("Sub", [w.ShapeOf(keys, 2, 3), w.ShapeOf(bias, -1)]);
                string block = w.Op("ConstantOfShape", [Concat(w, w.Op("Shape", [bias], Attr("end", -1)), missing)],
                    Tensor("value", FloatTensor(double.NegativeInfinity)));
                bias = w.Op("Concat", [bias, w.Op("CastLike", [block, q4])], Attr("axis", -1));
            }
        }
        string? positions = null;
        if (valid.Length > 0)
        {
            // Sample b attends keys j < valid[b]: [B, 1, 1, Skv].
            positions = w.Op("Range", [w.IntScalar(0), w.Op("Squeeze", [w.ShapeOf(keys, 2, 3), w.Ints(0)]), w.IntScalar(1)]);
            string kept = w.Op("Less", [w.Op("Unsqueeze", [positions, w.Ints(0)]), w.Op("Unsqueeze", [valid, w.Ints(1)])]);
            string padding = w.Op("Where", [w.Op("Unsqueeze", [kept, w.Ints(1, 2)]), Zero(), Excluded()]);
            bias = bias is null ? padding : w.Op("Add", [bias, padding]);
        }
        if (w.Int("is_causal", 0) == 0) return bias;

        if (positions is not null && pastKey.Length == 0)
        {
            // Without a past, the cache's end aligns the queries: query i sees keys j <= i + valid[b] - Sq.
            string queries = w.ShapeOf(q4, 2, 3);
            string rows = w.Op("Unsqueeze", [w.Op("Range", [w.IntScalar(0), w.Op("Squeeze", [queries, w.Ints(0)]), w.IntScalar(1)]), w.Ints(1)]);
            string offsets = w.Op("Sub", [w.Op("Unsqueeze", [positions, w.Ints(0)]), rows]);
            string limits = w.Op("Unsqueeze", [w.Op("Sub", [valid, queries]), w.Ints(1, 2)]);
            string seen = w.Op("LessOrEqual", [w.Op("Unsqueeze", [offsets, w.Ints(0)]), limits]);
            string aligned = w.Op("Where", [w.Op("Unsqueeze", [seen, w.Ints(1)]), Zero(), Excluded()]);
            return bias is null ? aligned : w.Op("Add", [bias, aligned]);
        }

        // Query i (after the past) sees keys up to past + i: -inf from diagonal past + 1 up.
        string diagonal = pastKey.Length > 0
            ? w.Op("Squeeze", [w.Op("Add", [w.ShapeOf(pastKey, 2, 3), w.Ints(1)]), w.Ints(0)])
            : w.IntScalar(1);
        string full = w.Op("ConstantOfShape", [Concat(w, w.ShapeOf(q4, 2, 3), w.ShapeOf(keys, 2, 3))], Tensor("value", FloatTensor(double.NegativeInfinity)));
        string causal = w.Op("Trilu", [w.Op("CastLike", [full, q4]), diagonal], Attr("upper", 1));
        return bias is null ? causal : w.Op("Add", [bias, causal]);
    }
}
