using JacService.Client;
using System.Buffers.Binary;
using System.Text;

namespace JacService.Jac.Tests;

public sealed class NpyTests
{
    [Fact]
    public void Float32_round_trips_with_shape_and_values_exact()
    {
        var a = new FloatTensor(new[] { 1.5f, -0f, float.Epsilon, 3.4e38f, -1e-7f, 42f }, 2, 3, 1);
        using var stream = new MemoryStream();
        Npy.Write(stream, a);
        var bytes = stream.ToArray();
        Assert.Equal(0, (bytes.Length - 6 * 4) % 64); // data aligned as numpy does it
        var back = Npy.Parse(bytes, "test");
        Assert.Equal(a.Shape, back.Shape);
        Assert.Equal(a.ToArray(), back.ToArray());
    }

    [Fact]
    public void One_dimensional_and_scalar_shapes_use_python_tuple_syntax()
    {
        using var stream = new MemoryStream();
        Npy.Write(stream, new FloatTensor(new float[] { 1, 2, 3, 4 }, 4));
        Assert.Contains("'shape': (4,)", Encoding.ASCII.GetString(stream.ToArray()));
        Assert.Equal([4L], Npy.Parse(stream.ToArray(), "t").Shape);

        stream.SetLength(0);
        Npy.Write(stream, new FloatTensor(new float[] { 7 }));
        var scalar = Npy.Parse(stream.ToArray(), "t");
        Assert.Empty(scalar.Shape);
        Assert.Equal([7f], scalar.ToArray());
    }

    [Fact]
    public void Float64_as_numpy_saves_by_default_is_read_as_float32()
    {
        var file = NpyBytes("<f8", "(2,)", [.. BitConverter.GetBytes(0.25), .. BitConverter.GetBytes(-2.0)]);
        var a = Npy.Parse(file, "x.npy");
        Assert.Equal([0.25f, -2f], a.ToArray());
    }

    [Fact]
    public void Other_dtypes_and_fortran_order_are_refused_with_a_fix()
    {
        var ints = NpyBytes("<i8", "(1,)", BitConverter.GetBytes(1L));
        Assert.Contains("astype(np.float32)", Assert.Throws<JacException>(() => Npy.Parse(ints, "i.npy")).Message);
        var fortran = NpyBytes("<f4", "(2, 2)", new byte[16], fortran: true);
        Assert.Contains("Fortran order", Assert.Throws<JacException>(() => Npy.Parse(fortran, "f.npy")).Message);
        Assert.Contains("not a .npy file", Assert.Throws<JacException>(() => Npy.Parse("{}"u8, "j.npy")).Message);
    }

    /// <summary>
    /// Headers that promise what no file holds ended jac with an unhandled OverflowException: a size past long's range
    /// (long.Parse), a negative one, and 2^62 float32 values, whose byte count wrapped to 0 so that an empty file
    /// "held" them. Each is now the file's error.
    /// </summary>
    [Theory]
    [InlineData("(99999999999999999999,)", "the header's shape (99999999999999999999,) is not a list of sizes (integers of 0 or more)")]
    [InlineData("(-4, 2)", "the header's shape (-4, 2) is not a list of sizes (integers of 0 or more)")]
    [InlineData("(4611686018427387904,)", "the header promises 4611686018427387904 values but the file holds 0")]
    [InlineData("(4294967296, 4294967296)", "the header promises 9223372036854775807 values but the file holds 0")]
    public void Headers_promising_impossible_sizes_are_refused_not_a_crash(string shape, string expected)
    {
        var e = Assert.Throws<JacException>(() => Npy.Parse(NpyBytes("<f4", shape, []), "h.npy"));
        Assert.Equal("h.npy: " + expected, e.Message);
    }

    [Fact]
    public void A_shape_whose_element_count_wraps_is_not_taken_for_an_empty_tensor()
    {
        Assert.Equal(long.MaxValue, FloatTensor.ElementCount([1L << 32, 1L << 32]));
        Assert.Equal(0, FloatTensor.ElementCount([1L << 40, 1L << 40, 0]));
        Assert.Throws<ArgumentException>(() => new FloatTensor(Array.Empty<float>(), 1L << 32, 1L << 32));
    }

    private static byte[] NpyBytes(string descr, string shape, byte[] data, bool fortran = false)
    {
        string header = $"{{'descr': '{descr}', 'fortran_order': {(fortran ? "True" : "False")}, 'shape': {shape}, }}".PadRight(117) + "\n";
        var bytes = new List<byte> { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0 };
        var length = new byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(length, (ushort)header.Length);
        bytes.AddRange(length);
        bytes.AddRange(Encoding.ASCII.GetBytes(header));
        bytes.AddRange(data);
        return bytes.ToArray();
    }
}
