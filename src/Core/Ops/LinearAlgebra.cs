using static JacService.Core.Ops.Scalars;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// Gemm and MatMul. Shapes are checked first and every matrix product goes through <see cref="Product"/>: TorchSharp's
/// matmul is the one tensor call that does not turn libtorch's errors into exceptions, so any error there ends the process.
/// </summary>
internal static class LinearAlgebra
{
    /// <summary>A product curves only where two of its operands depend on wrt (a bias added to Gemm's may count too: the check is only looser).</summary>
    public static bool TwoFactors(bool[] dependent) => dependent.Count(d => d) >= 2;

    /// <summary>
    /// torch.matmul on operands libtorch takes: the same element type, not bool (TorchSharp 0.107's THSTensor_matmul has
    /// no CATCH, so "expected m1 and m2 to have the same dtype" or "addmm not implemented for 'Bool'" terminated the
    /// process; a one-node MatMul model with a bool or int64 weight did it at load). Shapes are the callers' to check.
    /// </summary>
    public static Tensor Product(Tensor a, Tensor b)
    {
        ScalarType ta = a.dtype, tb = b.dtype;
        Shapes.Require(ta == tb && ta != ScalarType.Bool,
            () => ta == tb ? $"a matrix product of {ta} operands is not supported" : $"matrix product operands differ in type: {ta} and {tb}");
        return a.matmul(b);
    }

    public static Dual[] Gemm(OpContext c)
    {
        var a = c.In(0);
        var b = c.In(1);
        var bias = c.Optional(2);
        double alpha = c.Attr.Float("alpha", 1f), beta = c.Attr.Float("beta", 1f);
        bool transA = c.Attr.Int("transA", 0) != 0, transB = c.Attr.Int("transB", 0) != 0;
        // Each shape query is a native call that allocates its array through a callback: a few µs per Gemm at batch 1
        // when repeated, so each operand's shape is read once.
        long[] aShape = a.Shape, bShape = b.Shape;
        Shapes.Require(aShape.Length == 2 && bShape.Length == 2,
            () => $"Gemm needs 2-D A and B, got A {Shapes.Text(aShape)} and B {Shapes.Text(bShape)}");
        long[] aUsed = transA ? [aShape[1], aShape[0]] : aShape, bUsed = transB ? [bShape[1], bShape[0]] : bShape;

        var A = transA ? a.Value.t() : a.Value;
        var B = transB ? b.Value.t() : b.Value;
        Shapes.Require(aUsed[1] == bUsed[0],
            () => $"Gemm inner dimensions differ: A' {Shapes.Text(aUsed)} x B' {Shapes.Text(bUsed)}");
        long[] outShape = [aUsed[0], bUsed[1]];
        if (bias is { } cb)
            Shapes.Require(Shapes.Broadcast(cb.Shape, outShape).SequenceEqual(outShape),
                () => $"Gemm bias {Shapes.Text(cb.Shape)} does not broadcast to {Shapes.Text(outShape)}");

        var y = bias is { } C ? addmm(C.Value, A, B, (float)beta, (float)alpha) : alpha == 1 ? A.mm(B) : A.mm(B) * S(alpha);

        Tensor? t = null;
        if (a.Tangent is { } ta) t = Product(transA ? ta.transpose(1, 2) : ta, B);
        if (b.Tangent is { } tb) t = Tangents.Sum(t, Product(A, transB ? tb.transpose(1, 2) : tb));
        if (t is not null && alpha != 1) t = t * S(alpha);
        if (bias?.Tangent is { } tc) t = Tangents.Sum(t, Tangents.Align(tc, 2) * S(beta));
        return [new Dual(y, t is null ? null : Tangents.Fit(t, outShape))];
    }

    public static Dual[] MatMul(OpContext c)
    {
        var a = c.In(0);
        var b = c.In(1);
        var outShape = MatMulShape(a.Shape, b.Shape);
        var y = Product(a.Value, b.Value);

        Tensor? t = null;
        if (a.Tangent is { } ta) t = TangentTimesValue(ta, a.Rank, b.Value);
        if (b.Tangent is { } tb) t = Tangents.Sum(t, ValueTimesTangent(a.Value, tb, b.Rank));
        return [new Dual(y, t is null ? null : Tangents.Fit(t, outShape))];
    }

    public static long GemmAllocates(OpContext c)
    {
        long[] a = c.In(0).Shape, b = c.In(1).Shape;
        // Gemm refuses operands that are not matrices when it runs.
        if (a.Length != 2 || b.Length != 2) return 0;
        bool transA = c.Attr.Int("transA", 0) != 0, transB = c.Attr.Int("transB", 0) != 0;
        return Sizes.Times(transA ? a[1] : a[0], transB ? b[0] : b[1]);
    }

    /// <summary>
    /// The product, and both operands, which torch.matmul may copy broadcast to the common batch shape; but a matrix or
    /// vector on the right is never broadcast: torch.matmul folds the left operand's batch axes into its rows (one copy
    /// of it at most). Counting the weight once per row of a seq-first transformer ([197, B, 768] x [768, 2304] in
    /// ViT-B/16: 349 M elements) refused torchvision's ViT at load.
    /// </summary>
    public static long MatMulAllocates(OpContext c)
    {
        long[] a = c.In(0).Shape, b = c.In(1).Shape;
        var outShape = MatMulShape(a, b);
        if (b.Length <= 2) return Sizes.Plus(Sizes.Elements(outShape), Sizes.Elements(a));
        long[] a2 = a.Length == 1 ? [1, a[0]] : a, b2 = b.Length == 1 ? [b[0], 1] : b;
        long batch = Sizes.Elements(Shapes.Broadcast(a2[..^2], b2[..^2]));
        return Sizes.Sum([Sizes.Elements(outShape), Sizes.Elements([batch, a2[^2], a2[^1]]), Sizes.Elements([batch, b2[^2], b2[^1]])]);
    }

    /// <summary>NumPy matmul output shape, or an error naming both operands.</summary>
    public static long[] MatMulShape(long[] a, long[] b)
    {
        Shapes.Require(a.Length >= 1 && b.Length >= 1, () => "MatMul operands must have rank 1 or more");
        long[] a2 = a.Length == 1 ? [1, a[0]] : a;
        long[] b2 = b.Length == 1 ? [b[0], 1] : b;
        Shapes.Require(a2[^1] == b2[^2],
            () => $"MatMul inner dimensions differ: {Shapes.Text(a)} x {Shapes.Text(b)}");
        var batch = Shapes.Broadcast(a2[..^2], b2[..^2]);
        var shape = batch.ToList();
        if (a.Length > 1) shape.Add(a2[^2]);
        if (b.Length > 1) shape.Add(b2[^1]);
        return shape.ToArray();
    }

    // Per direction the tangent is a matrix (or vector) like its value; vectors are promoted to matrices and the
    // tangent gets unit batch axes after the basis axis so the basis axis never meets the other operand's batch.
    private static Tensor TangentTimesValue(Tensor ta, long rankA, Tensor b)
    {
        bool aVector = rankA == 1, bVector = b.dim() == 1;
        var ta2 = aVector ? ta.unsqueeze(1) : ta;
        var b2 = bVector ? b.unsqueeze(-1) : b;
        long matRank = Math.Max(ta2.dim() - 1, b2.dim());
        var r = Product(Tangents.Align(ta2, matRank), b2);
        if (aVector) r = r.squeeze(-2);
        if (bVector) r = r.squeeze(-1);
        return r;
    }

    private static Tensor ValueTimesTangent(Tensor a, Tensor tb, long rankB)
    {
        bool aVector = a.dim() == 1, bVector = rankB == 1;
        var a2 = aVector ? a.unsqueeze(0) : a;
        var tb2 = bVector ? tb.unsqueeze(-1) : tb;
        long matRank = Math.Max(a2.dim(), tb2.dim() - 1);
        var r = Product(a2, Tangents.Align(tb2, matRank));
        if (aVector) r = r.squeeze(-2);
        if (bVector) r = r.squeeze(-1);
        return r;
    }

    // ---- Second-order rules: a product of two operands that both depend on wrt pairs their gradients --------------

    /// <summary>alpha (G_A' ⊗ G_B' + G_B' ⊗ G_A') through the matrix product; zero unless both A and B carry a tangent.</summary>
    public static Tensor?[] GemmCurvature(CurvatureContext c)
    {
        if (c.G(0) is not { } ga || c.G(1) is not { } gb) return [null];
        double alpha = c.Attr.Float("alpha", 1f);
        var A = c.Attr.Int("transA", 0) != 0 ? ga.transpose(1, 2) : ga;
        var B = c.Attr.Int("transB", 0) != 0 ? gb.transpose(1, 2) : gb;
        var second = c.SymmetricPairs(A, B, Product);
        return [alpha == 1 ? second : second * S(alpha)];
    }

    /// <summary>The pairs of the two operands' gradients through NumPy matmul, vectors promoted as the forward promotes them.</summary>
    public static Tensor?[] MatMulCurvature(CurvatureContext c)
    {
        if (c.G(0) is not { } ga || c.G(1) is not { } gb) return [null];
        bool aVector = c.In(0).dim() == 1, bVector = c.In(1).dim() == 1;
        var a2 = aVector ? ga.unsqueeze(1) : ga;
        var b2 = bVector ? gb.unsqueeze(-1) : gb;
        long rank = Math.Max(a2.dim(), b2.dim()) - 1;
        var r = c.SymmetricPairs(Tangents.Align(a2, rank), Tangents.Align(b2, rank), Product);
        if (aVector) r = r.squeeze(-2);
        if (bVector) r = r.squeeze(-1);
        return [r];
    }

    // ---- Reverse rules ----------------------------------------------------------------------------------------

    /// <summary>Y = alpha A'B' + beta C: C_A' = alpha C_Y B'^T, C_B' = alpha A'^T C_Y, C_C = beta C_Y summed over broadcast axes.</summary>
    public static Tensor?[] GemmVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        if (c.Cotangent(0) is not { } ct) return result;
        double alpha = c.Attr.Float("alpha", 1f), beta = c.Attr.Float("beta", 1f);
        bool transA = c.Attr.Int("transA", 0) != 0, transB = c.Attr.Int("transB", 0) != 0;
        var A = transA ? c.In(0).t() : c.In(0);
        var B = transB ? c.In(1).t() : c.In(1);
        var scaled = alpha == 1 ? ct : ct * S(alpha);
        if (c.Needs(0))
        {
            var ctA = Product(scaled, B.t());
            result[0] = transA ? ctA.transpose(1, 2) : ctA;
        }
        if (c.Needs(1))
        {
            var ctB = Product(A.t(), scaled);
            result[1] = transB ? ctB.transpose(1, 2) : ctB;
        }
        if (c.Needs(2)) result[2] = Tangents.Unbroadcast(beta == 1 ? ct : ct * S(beta), c.In(2).Dims());
        return result;
    }

    /// <summary>
    /// NumPy matmul: C_a = C_y b^T and C_b = a^T C_y per matrix, summed over the batch axes broadcasting stretched;
    /// vectors are promoted to matrices the way the forward promotes them.
    /// </summary>
    public static Tensor?[] MatMulVjp(VjpContext c)
    {
        var result = new Tensor?[2];
        if (c.Cotangent(0) is not { } ct) return result;
        Tensor a = c.In(0), b = c.In(1);
        bool aVector = a.dim() == 1, bVector = b.dim() == 1;
        var a2 = aVector ? a.unsqueeze(0) : a;
        var b2 = bVector ? b.unsqueeze(-1) : b;
        var ct2 = ct;
        if (aVector) ct2 = ct2.unsqueeze(-2);
        if (bVector) ct2 = ct2.unsqueeze(-1);
        // ct2 is [K, ..batch, M, N]; the basis axis leads, so it never meets an operand's batch axes.
        if (c.Needs(0))
        {
            var ca = Tangents.Unbroadcast(Product(Tangents.Align(ct2, a2.dim()), b2.transpose(-1, -2)), a2.Dims());
            result[0] = aVector ? ca.squeeze(-2) : ca;
        }
        if (c.Needs(1))
        {
            var cb = Tangents.Unbroadcast(Product(a2.transpose(-1, -2), ct2), b2.Dims());
            result[1] = bVector ? cb.squeeze(-1) : cb;
        }
        return result;
    }
}
