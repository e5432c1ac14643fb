namespace JacService.Core.Models;

/// <summary>
/// Whether a faster way to a result (ONNX Runtime's Predict, a compiled derivative graph) gave what the interpreter, the
/// reference, gave for the same batch: every output and derivative by name, of the same shape and within float32
/// rounding of two implementations that order their sums differently. Loose on purpose: it is there to catch a graph
/// that computes something else (a weight read in the wrong shape, a rule that does not match the engine's), which
/// differs by the order of the values themselves, not to judge rounding. A few elements past a kink (a ReLU input that
/// rounds to either side of zero) pass.
/// </summary>
internal static class ResultAgreement
{
    /// <summary>
    /// Root-mean-square difference allowed, as a fraction of the larger root-mean-square of the two. Results of the
    /// fixtures and op rows (4,700 checks in the Core tests) differ by at most 3e-5 of it; saliency gradients of
    /// torchvision's ReLU networks by up to 4e-3 (ResNet-101: a few ReLU inputs within rounding of zero, whose gradient
    /// paths each side takes differently); a wrong weight or a wrong rule by 0.3 and more.
    /// </summary>
    internal const double RelativeRms = 5e-2;

    /// <summary>
    /// A root-mean-square difference below this never counts: results that are zero up to rounding (one ordering of a
    /// sum giving exact zeros, the other 1e-12) have no scale to be relative to. Low enough that gradients of 1e-8 are
    /// still checked.
    /// </summary>
    internal const double AbsoluteRms = 1e-9;

    /// <summary>Elements finite in one and not the other (or infinite with other signs) allowed, as a fraction of all.</summary>
    internal const double NonFiniteFraction = 1e-2;

    /// <summary>Why <paramref name="candidate"/> disagrees with <paramref name="reference"/>, or null where it agrees.</summary>
    public static string? Disagreement(EngineResult reference, EngineResult candidate) =>
        Disagreement("output", reference.Outputs, candidate.Outputs)
        ?? Disagreement("derivative", reference.Jacobians, candidate.Jacobians)
        ?? Disagreement("second derivative", reference.SecondOrder, candidate.SecondOrder);

    private static string? Disagreement(string kind, IReadOnlyDictionary<string, HostTensor> reference, IReadOnlyDictionary<string, HostTensor> candidate)
    {
        foreach (var (name, expected) in reference.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            if (!candidate.TryGetValue(name, out var actual)) return $"gives no {kind} '{name}'";
            if (Disagreement(expected, actual) is { } why) return $"{kind} '{name}' {why}";
        }
        return candidate.Keys.FirstOrDefault(k => !reference.ContainsKey(k)) is { } extra ? $"gives a {kind} '{extra}' the interpreter does not" : null;
    }

    /// <summary>Why <paramref name="actual"/> disagrees with <paramref name="expected"/> (a phrase after the value's name), or null.</summary>
    internal static string? Disagreement(HostTensor expected, HostTensor actual)
    {
        if (!expected.Shape.AsSpan().SequenceEqual(actual.Shape)) return $"has shape {actual.ShapeText} where the interpreter's has {expected.ShapeText}";
        long count = expected.Count;
        if (count == 0) return null;
        double difference = 0, expectedSquares = 0, actualSquares = 0, largest = 0;
        long nonFinite = 0, largestAt = 0;
        for (long i = 0; i < count; i++)
        {
            float e = expected.Data[i], a = actual.Data[i];
            if (!float.IsFinite(e) || !float.IsFinite(a))
            {
                // NaN equals NaN here (float.Equals), as the same non-finite value from both is agreement.
                if (!e.Equals(a)) nonFinite++;
                continue;
            }
            double d = (double)a - e;
            difference += d * d;
            expectedSquares += (double)e * e;
            actualSquares += (double)a * a;
            if (Math.Abs(d) > largest) (largest, largestAt) = (Math.Abs(d), i);
        }
        if (nonFinite > NonFiniteFraction * count)
            return $"has {nonFinite:N0} of {count:N0} elements finite where the interpreter's are not, or the other way";
        double rms = Math.Sqrt(difference / count), scale = Math.Sqrt(Math.Max(expectedSquares, actualSquares) / count);
        if (rms <= RelativeRms * scale + AbsoluteRms) return null;
        return $"differs from the interpreter's by {rms:G3} root mean square, {rms / scale:P1} of its scale ({scale:G3}); "
            + $"most at element {largestAt:N0}: {actual.Data[largestAt]:G6} where the interpreter gives {expected.Data[largestAt]:G6}";
    }
}
