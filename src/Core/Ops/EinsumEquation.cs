namespace JacService.Core.Ops;

/// <summary>
/// An Einsum equation made explicit: one term per operand and the output's, each a string of labels, "..." at most
/// once and only at its start (batch dimensions, as exporters write them). An operand's term may repeat a label (its
/// diagonal: "bii->b" is a trace per sample); the output's may not, as ONNX says.
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
            if (ReferenceEquals(term, output) && labels.Distinct().Count() != labels.Length)
                throw new ArgumentException($"equation '{equation}': the output term '{term}' repeats a label");
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
        return FreeLabels.First(l => !used.Contains(l));
    }

    private const string FreeLabels = "zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQPONMLKJIHGFEDCBA";

    /// <summary>The equation with <paramref name="label"/> leading the terms of the given operands and the output.</summary>
    public EinsumEquation WithLabel(char label, params int[] operands) =>
        new(Inputs.Select((t, i) => operands.Contains(i) ? label + t : t).ToArray(), label + Output);

    /// <summary>
    /// The contraction that pulls the output's cotangent back to operand <paramref name="i"/>: the cotangent (its term
    /// led by <paramref name="basis"/>) with every other operand, then one all-ones vector per label only operand i has
    /// (the forward contraction summed it; the pullback is constant along it). Returns the equation and those labels.
    /// Where operand i repeats a label, this reaches its term with each label once; <see cref="Diagonal"/> goes on.
    /// </summary>
    public (EinsumEquation Equation, char[] Own) Pullback(char basis, int i)
    {
        var elsewhere = Inputs.Where((_, j) => j != i).Append(Output).SelectMany(Labels).ToHashSet();
        var distinct = Labels(Inputs[i]).Distinct().ToArray();
        var own = distinct.Where(l => !elsewhere.Contains(l)).ToArray();
        string[] inputs = [basis + Output, .. Inputs.Where((_, j) => j != i), .. own.Select(l => l.ToString())];
        return (new EinsumEquation(inputs, basis + Prefix(Inputs[i]) + new string(distinct)), own);
    }

    /// <summary>
    /// For an operand whose term repeats a label, the contraction that puts the pullback's result (its labels once, led
    /// by <paramref name="basis"/>) on the diagonals the term reads: one identity matrix per repeat, pairing the label
    /// with a fresh one in the repeat's place. Returns the equation and the label of each identity; null where no label
    /// repeats.
    /// </summary>
    public (string Equation, char[] Identities)? Diagonal(char basis, int i)
    {
        var labels = Labels(Inputs[i]);
        if (labels.Distinct().Count() == labels.Length) return null;
        var used = Inputs.Append(Output).SelectMany(Labels).Append(basis).ToHashSet();
        var fresh = FreeLabels.Where(l => !used.Contains(l)).GetEnumerator();
        var target = new char[labels.Length];
        var identities = new List<(char Label, char Repeat)>();
        for (int k = 0; k < labels.Length; k++)
        {
            if (Array.IndexOf(labels, labels[k]) == k)
            {
                target[k] = labels[k];
                continue;
            }
            if (!fresh.MoveNext()) throw new ArgumentException($"equation '{Text}' leaves no label free for the diagonals of term '{Inputs[i]}'");
            target[k] = fresh.Current;
            identities.Add((labels[k], fresh.Current));
        }
        var prefix = basis + Prefix(Inputs[i]);
        string[] terms = [prefix + new string(labels.Distinct().ToArray()), .. identities.Select(p => $"{p.Label}{p.Repeat}")];
        return (string.Join(",", terms) + "->" + prefix + new string(target), [.. identities.Select(p => p.Label)]);
    }

    /// <summary>Why operand <paramref name="i"/> of this shape has no diagonal where its term repeats a label; null where it has.</summary>
    public string? DiagonalMismatch(int i, long[] shape)
    {
        var labels = Labels(Inputs[i]);
        if (shape.Length < labels.Length) return null;
        int offset = shape.Length - labels.Length;
        for (int k = 0; k < labels.Length; k++)
        {
            int first = Array.IndexOf(labels, labels[k]);
            if (shape[offset + first] != shape[offset + k])
                return $"Einsum term '{Inputs[i]}' reads a diagonal of axes {offset + first} and {offset + k} of its operand {i} {Shapes.Text(shape)}, whose sizes differ";
        }
        return null;
    }

    private static string Prefix(string term) => term.StartsWith(Ellipsis) ? Ellipsis : "";

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
