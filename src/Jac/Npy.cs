using JacService.Client;
using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace JacService.Jac;

/// <summary>A dense float32 array: the shape and its values in row-major (C) order.</summary>
/// <summary>
/// NumPy's .npy format (version 1.0–3.0), as much as jac needs: little-endian float32 in C order is written; float32
/// and float64 are read (float64 is what <c>np.save</c> writes by default, so it is narrowed rather than refused).
/// The format is a magic string, a Python-dict header and the raw values; a 100-line reader beats a dependency on
/// NumSharp, which brings a whole ndarray library for this.
/// </summary>
public static partial class Npy
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    public static FloatTensor Read(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new JacException($"cannot read {path}: {e.Message}"); }
        return Parse(bytes, path);
    }

    public static FloatTensor Parse(ReadOnlySpan<byte> bytes, string name)
    {
        if (bytes.Length < 10 || !bytes[..6].SequenceEqual(Magic))
            throw new JacException($"{name} is not a .npy file (no \\x93NUMPY magic)");
        int major = bytes[6];
        int headerLength, headerStart;
        if (major == 1) { headerLength = BinaryPrimitives.ReadUInt16LittleEndian(bytes[8..]); headerStart = 10; }
        else if (major is 2 or 3) { headerLength = (int)BinaryPrimitives.ReadUInt32LittleEndian(bytes[8..]); headerStart = 12; }
        else throw new JacException($"{name}: unsupported .npy version {major}");
        if (headerStart + headerLength > bytes.Length) throw new JacException($"{name}: truncated .npy header");
        string header = Encoding.UTF8.GetString(bytes.Slice(headerStart, headerLength));

        string descr = HeaderField(DescrPattern(), header, name, "descr");
        bool fortran = HeaderField(FortranPattern(), header, name, "fortran_order") == "True";
        string shapeText = HeaderField(ShapePattern(), header, name, "shape");
        long[] shape = shapeText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(d => long.TryParse(d, NumberStyles.None, CultureInfo.InvariantCulture, out long n) ? n
                : throw new JacException($"{name}: the header's shape ({shapeText}) is not a list of sizes (integers of 0 or more)"))
            .ToArray();
        if (fortran && shape.Count(d => d > 1) > 1)
            throw new JacException($"{name} is in Fortran order; save it in C order (np.save(path, np.ascontiguousarray(a)))");

        long count = FloatTensor.ElementCount(shape);
        var data = bytes[(headerStart + headerLength)..];
        float[] values = descr switch
        {
            "<f4" or "=f4" => ReadFloats(data, count, 4, name, (s) => BinaryPrimitives.ReadSingleLittleEndian(s)),
            "<f8" or "=f8" => ReadFloats(data, count, 8, name, (s) => (float)BinaryPrimitives.ReadDoubleLittleEndian(s)),
            _ => throw new JacException($"{name} holds '{descr}' values; jac reads float32 ('<f4') or float64 ('<f8'): " +
                                        "convert with a.astype(np.float32)"),
        };
        return new FloatTensor(values, shape);
    }

    private delegate float Reader(ReadOnlySpan<byte> bytes);

    private static float[] ReadFloats(ReadOnlySpan<byte> data, long count, int size, string name, Reader read)
    {
        // Divided, not multiplied: count * size can wrap for a header that promises 2^62 values.
        if (data.Length / size < count)
            throw new JacException($"{name}: the header promises {count} values but the file holds {data.Length / size}");
        var values = new float[count];
        for (int i = 0; i < values.Length; i++) values[i] = read(data.Slice(i * size, size));
        return values;
    }

    public static void Write(string path, FloatTensor array)
    {
        using var stream = File.Create(path);
        Write(stream, array);
    }

    public static void Write(Stream stream, FloatTensor array)
    {
        string shape = array.Shape.Length == 1 ? $"({array.Shape[0]},)" : "(" + string.Join(", ", array.Shape) + ")";
        string dict = $"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}";
        // The header, padded with spaces and ended by a newline, makes the data start at a multiple of 64 bytes.
        int total = (10 + dict.Length + 1 + 63) / 64 * 64;
        string header = dict.PadRight(total - 10 - 1) + "\n";
        stream.Write(Magic);
        stream.Write([1, 0]);
        Span<byte> length = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(length, (ushort)header.Length);
        stream.Write(length);
        stream.Write(Encoding.ASCII.GetBytes(header));
        var values = array.Span;
        var data = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(data.AsSpan(i * 4), values[i]);
        stream.Write(data);
    }

    private static string HeaderField(Regex pattern, string header, string name, string field)
    {
        var m = pattern.Match(header);
        return m.Success ? m.Groups[1].Value : throw new JacException($"{name}: .npy header has no '{field}': {header.Trim()}");
    }

    [GeneratedRegex(@"'descr'\s*:\s*'([^']*)'")]
    private static partial Regex DescrPattern();

    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")]
    private static partial Regex FortranPattern();

    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapePattern();
}
