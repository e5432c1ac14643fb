namespace JacService.Core.Compiled;

/// <summary>
/// A value inside a recurrent cell written as ONNX nodes (<see cref="CellEmitter"/>): the node computing it, its tangent
/// [K, ..value] (null where it carries none), and in a reverse pass its cotangent, summed over the values that read it.
/// </summary>
internal sealed class EmittedCellValue(string value, string? tangent = null)
{
    public string V { get; } = value;
    public string? G { get; } = tangent;
    public string? Cotangent { get; private set; }

    public void AddCotangent(OnnxEmitter e, string? ct)
    {
        if (ct is not null) Cotangent = Cotangent is null ? ct : e.Add(Cotangent, ct);
    }
}
