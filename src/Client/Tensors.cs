using JacService.Protos.V1;

namespace JacService.Client;

/// <summary>Tensor messages from and to row-major float arrays.</summary>
public static class Tensors
{
    public static Tensor Create(float[] data, params long[] shape) => new FloatTensor(data, shape).ToProto();

    public static float[] ToArray(this Tensor t) => t.Data.ToArray();

    public static long[] ShapeArray(this Tensor t) => t.Shape.ToArray();

    public static FloatTensor ToFloatTensor(this Tensor t) => FloatTensor.FromProto(t);

    /// <summary>Sample <paramref name="b"/> of a tensor with a leading batch axis (e.g. one Jacobian of a BatchJacobian).</summary>
    public static float[] Row(this Tensor t, int b)
    {
        if (t.Shape.Count == 0 || b < 0 || b >= t.Shape[0])
            throw new ArgumentOutOfRangeException(nameof(b), $"row {b} of a tensor of shape [{string.Join(", ", t.Shape)}]");
        int per = (int)(t.Data.Count / t.Shape[0]);
        var row = new float[per];
        for (int i = 0; i < per; i++) row[i] = t.Data[b * per + i];
        return row;
    }
}
