namespace JacService.Core.Tests;

/// <summary>
/// What resolving sequences into tensors refuses at load, with the reason (OpRows checks what it serves against ONNX
/// Runtime, finite differences and autograd).
/// </summary>
public class SequenceFoldingTests
{
    private static readonly Dictionary<string, (Action<OnnxBuilder> Build, string Message)> Refused = new()
    {
        ["a position from the data"] = (g =>
        {
            var x = g.X(2, 3);
            var position = g.Node("Cast", [g.Node("ReduceSum", [x], ("keepdims", 0))], ("to", OnnxType.Int64));
            g.Node("SequenceAt", [g.Node("SequenceConstruct", [x, x]), position]);
        }, "is not fixed when the model loads"),
        ["a position out of range"] = (g =>
        {
            var x = g.X(2, 3);
            g.Node("SequenceAt", [g.Node("SequenceConstruct", [x]), g.IntsShaped([], 3)]);
        }, "its position 3 is outside [-1, 0] for a sequence of 1"),
        ["an insert past the end"] = (g =>
        {
            var x = g.X(2, 3);
            g.Node("ConcatFromSequence", [g.Node("SequenceInsert", [g.Node("SequenceConstruct", [x]), x, g.IntsShaped([], 2)])], ("axis", 1));
        }, "its position 2 is outside [-1, 1] for a sequence of 1"),
        ["a sequence another op reads"] = (g =>
        {
            var x = g.X(2, 3);
            g.Node("Relu", [g.Node("SequenceConstruct", [x])]);
        }, "a sequence is served only through the sequence ops, into tensors"),
        ["an empty sequence concatenated"] = (g =>
        {
            var x = g.X(2, 3);
            g.Node("Add", [x, g.Node("ConcatFromSequence", [g.Node("SequenceEmpty", [])], ("axis", 1))]);
        }, "it concatenates an empty sequence, whose shape the file does not fix"),
        ["an erase from an empty sequence"] = (g =>
        {
            var x = g.X(2, 3);
            g.Node("ConcatFromSequence", [g.Node("SequenceErase", [g.Node("SequenceEmpty", [])])], ("axis", 1));
        }, "it erases from an empty sequence"),
        ["a sequence as a graph output"] = (g =>
        {
            var x = g.X(2, 3);
            g.Node("SequenceConstruct", [x, x]);
        }, "is a sequence; every output must be a tensor"),
        ["a split along the batch axis"] = (g =>
        {
            var x = g.X(2, 3);
            g.Node("SequenceAt", [g.Node("SplitToSequence", [x]), g.IntsShaped([], 0)]);
        }, "it splits along the batch axis (axis 0), which would mix samples"),
        ["a split of an undeclared length"] = (g =>
        {
            var x = g.X(2, 3);
            g.Node("SequenceAt", [g.Node("SplitToSequence", [x], ("axis", 1)), g.IntsShaped([], 0)]);
        }, "along axis 1 is not declared"),
        ["split sizes that do not add up"] = (g =>
        {
            var x = g.X(2, 5);
            g.Declare(x, 1);
            g.Node("SequenceAt", [g.Node("SplitToSequence", [x, g.Ints(2, 2)], ("axis", 1)), g.IntsShaped([], 0)]);
        }, "its split sizes add up to 4, not the 5 along axis 1"),
        ["keepdims 0 with pieces of 2"] = (g =>
        {
            var x = g.X(2, 4);
            g.Declare(x, 1);
            g.Node("SequenceAt", [g.Node("SplitToSequence", [x, g.IntsShaped([], 2)], ("axis", 1), ("keepdims", 0)), g.IntsShaped([], 0)]);
        }, "keepdims 0 with pieces longer than 1"),
        ["a sequence op on what is not a sequence"] = (g =>
        {
            var x = g.X(2, 3);
            g.Node("SequenceAt", [x, g.IntsShaped([], 0)]);
        }, "input 0 'x0' is not a sequence made before it"),
    };

    public static TheoryData<string> RefusedNames => new(Refused.Keys);

    [Theory]
    [MemberData(nameof(RefusedNames))]
    public void WhatIsNotFixedAtLoadIsRefusedWithTheReason(string name)
    {
        var (build, expected) = Refused[name];
        string message = LoadRefusal.Of(build);
        Assert.Contains(expected, message);
        Assert.DoesNotContain("unsupported op", message);
    }
}
