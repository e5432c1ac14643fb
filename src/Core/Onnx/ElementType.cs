namespace JacService.Core.Onnx;

/// <summary>ONNX element types the engine accepts (<see cref="ElementTypes"/> says how each is held on the device).</summary>
public enum ElementType
{
    Float = 1,
    Int32 = 6,
    Int64 = 7,
    Bool = 9,
    Float16 = 10,
    Double = 11,
}
