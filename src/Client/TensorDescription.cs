namespace JacService.Client;

/// <summary>A model input or output: -1 in <see cref="Shape"/> for the batch axis and other dynamic axes; ONNX type name ("float", "int64", ...).</summary>
public sealed record TensorDescription(string Name, long[] Shape, string ElementType);
