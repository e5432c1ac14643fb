namespace JacService.Core.Ops;

/// <summary>
/// An Einsum equation made explicit: one term per operand and the output's, each a string of labels, "..." at most
/// once and only at its start (batch dimensions, as exporters write them). Labels repeated within a term (diagonals,
/// traces) are refused, so each label names one axis of each term that has it.
/// </summary>
internal sealed record EinsumEquation(string[] Inputs, string Output)
{
    private const string Ellipsis = "...";

    public string Text => string.Join(",", Inputs) + "->" + Output;

    public static EinsumEquation Parse(string equation, int operands)
    {
        var text = equation.Replace(" ", "");
        var sides = text.Split("->");
        if (sides.Length > 2) throw new ArgumentException($"equation '{equation}' has more than one '->'");
        var inputs = sides[0].Split(',');
        if (inputs.Length != operands)
            throw new ArgumentException($"equation '{equation}' has {inputs.Length} input terms for {operands} operands");
        bool ellipsis = inputs.Any(t => t.Contains(Ellipsis));
        string output = sides.Length == 2 ? sides[1]
            // Implicit output: the labels that occur once, in alphabetical order, after the ellipsis (NumPy's rule).
            : (ellipsis ? Ellipsis : "") + new string(inputs.SelectMany(Labels).GroupBy(l => l).Where(g => g.Count() == 1).Select(g => g.Key).Order().ToArray());
        foreach (var term in inputs.Append(output))
        {
            var labels = Labels(term);
            if (labels.Any(l => !char.IsAsciiLetter(l))) throw new ArgumentException($"equation '{equation}': term '{term}' holds a character other than a letter or a leading '...'");
            if (labels.Distinct().Count() != labels.Length) throw new ArgumentException($"equation '{equation}': term '{term}' repeats a label (diagonals and traces are not supported)");
            if (term.Contains(Ellipsis) != ellipsis) throw new ArgumentException($"equation '{equation}': '...' must be in every term or in none");
        }
        var known = inputs.SelectMany(Labels).ToHashSet();
        var missing = Labels(output).Where(l => !known.Contains(l)).ToArray();
        if (missing.Length > 0) throw new ArgumentException($"equation '{equation}': output label '{missing[0]}' is in no input term");
        return new EinsumEquation(inputs, output);
    }

    /// <summary>A term's labels, without its "...".</summary>
    public static char[] Labels(string term) => (term.StartsWith(Ellipsis) ? term[Ellipsis.Length..] : term).ToCharArray();

    /// <summary>A letter no term uses: the label of an extra axis (the basis of directions, or of pairs).</summary>
    public char FreeLabel()
    {
        var used = Inputs.Append(Output).SelectMany(Labels).ToHashSet();
        return "zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQPONMLKJIHGFEDCBA".First(l => !used.Contains(l));
    }

    /// <summary>The equation with <paramref name="label"/> leading the terms of the given operands and the output.</summary>
    public EinsumEquation WithLabel(char label, params int[] operands) =>
        new(Inputs.Select((t, i) => operands.Contains(i) ? label + t : t).ToArray(), label + Output);

    /// <summary>
    /// The contraction that pulls the output's cotangent back to operand <paramref name="i"/>: the cotangent (its term
    /// led by <paramref name="basis"/>) with every other operand, then one all-ones vector per label only operand i has
    /// (the forward contraction summed it; the pullback is constant along it). Returns the equation and those labels.
    /// </summary>
    public (EinsumEquation Equation, char[] Own) Pullback(char basis, int i)
    {
        var elsewhere = Inputs.Where((_, j) => j != i).Append(Output).SelectMany(Labels).ToHashSet();
        var own = Labels(Inputs[i]).Where(l => !elsewhere.Contains(l)).ToArray();
        string[] inputs = [basis + Output, .. Inputs.Where((_, j) => j != i), .. own.Select(l => l.ToString())];
        return (new EinsumEquation(inputs, basis + Inputs[i]), own);
    }

    /// <summary>The size of <paramref name="label"/> in operand <paramref name="i"/> of the given shape.</summary>
    public long Size(int i, char label, long[] shape)
    {
        var labels = Labels(Inputs[i]);
        return shape[shape.Length - labels.Length + Array.IndexOf(labels, label)];
    }

    /// <summary>The output's shape for operands of the given shapes (the ellipsis broadcast).</summary>
    public long[] OutputShape(long[][] shapes)
    {
        var sizes = new Dictionary<char, long>();
        long[] batch = [];
        for (int i = 0; i < Inputs.Length; i++)
        {
            var labels = Labels(Inputs[i]);
            if (shapes[i].Length < labels.Length) return [];
            for (int k = 0; k < labels.Length; k++)
                sizes[labels[k]] = Math.Max(sizes.GetValueOrDefault(labels[k], 1), shapes[i][shapes[i].Length - labels.Length + k]);
            var leading = shapes[i][..^labels.Length];
            batch = leading.Length > batch.Length ? leading : batch;
        }
        return [.. batch, .. Labels(Output).Select(l => sizes[l])];
    }
}
