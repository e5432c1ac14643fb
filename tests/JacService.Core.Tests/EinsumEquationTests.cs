using JacService.Core.Models;
using JacService.Core.Ops;

namespace JacService.Core.Tests;

/// <summary>How an Einsum equation is read: its implicit output, the label its derivatives add, and what is refused at load.</summary>
public class EinsumEquationTests
{
    [Theory]
    [InlineData("bij,jk", 2, "bij,jk->bik")]
    [InlineData("ij,jk", 2, "ij,jk->ik")]
    [InlineData("...ij,...jk", 2, "...ij,...jk->...ik")]
    [InlineData("bi, bi -> b", 2, "bi,bi->b")]
    [InlineData("ba", 1, "ba->ab")]
    public void AnImplicitOutputTakesTheLabelsThatOccurOnceInAlphabeticalOrder(string equation, int operands, string explicitForm) =>
        Assert.Equal(explicitForm, EinsumEquation.Parse(equation, operands).Text);

    [Fact]
    public void DerivativesLeadTheTermsWithALabelNoTermUses()
    {
        var equation = EinsumEquation.Parse("zy,yx->zx", 2);
        Assert.Equal('w', equation.FreeLabel());
        Assert.Equal("wzy,yx->wzx", equation.WithLabel('w', 0).Text);
        var (pullback, own) = EinsumEquation.Parse("bij,bk->bk", 2).Pullback('z', 0);
        Assert.Equal("zbk,bk,i,j->zbij", pullback.Text);
        Assert.Equal(['i', 'j'], own);
    }

    [Fact]
    public void ARepeatedLabelIsPulledBackOntoItsDiagonal()
    {
        var equation = EinsumEquation.Parse("bjij,bi->bj", 2);
        var (pullback, own) = equation.Pullback('z', 0);
        Assert.Equal("zbj,bi->zbji", pullback.Text);
        Assert.Empty(own);
        var (diagonal, identities) = equation.Diagonal('z', 0)!.Value;
        Assert.Equal("zbji,jy->zbjiy", diagonal);
        Assert.Equal(['j'], identities);
        Assert.Null(equation.Diagonal('z', 1));
        Assert.Equal("ii->", EinsumEquation.Parse("ii", 1).Text);
    }

    [Theory]
    [InlineData("ij,jk->ii", "the output term 'ii' repeats a label")]
    [InlineData("...ij,jk->...ik", "'...' must be in every term or in none")]
    [InlineData("ij,jk->iq", "output label 'q' is in no input term")]
    [InlineData("i,j,k->ijk", "has 3 input terms for 2 operands")]
    [InlineData("i1,jk->ik", "term 'i1' holds a character other than a letter or a leading '...'")]
    public void AnEquationItCannotDifferentiateIsRefusedAtLoad(string equation, string message)
    {
        var g = new OnnxBuilder(13);
        g.Node("Einsum", [g.X(2, 3), g.X(3, 3)], ("equation", equation));
        var e = Assert.Throws<ModelLoadException>(() => ModelVersion.Load("einsum", 1, g.ToBytes(), new EngineLimits()));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void ADiagonalOfAxesOfDifferentSizesIsRefusedWithTheReason()
    {
        var g = new OnnxBuilder(13);
        g.Node("Einsum", [g.X(2, 3, 4)], ("equation", "bii->b"));
        // The input's axes are not declared, so the node is first planned for a request.
        using var model = ModelVersion.Load("einsum", 1, g.ToBytes(), new EngineLimits());
        using var scope = TorchSharp.torch.NewDisposeScope();
        var e = Assert.Throws<NodeEvaluationException>(() => model.Jacobian([new HostTensor([2, 3, 4], new float[24])], 0, [0], Derivatives.DerivativeMode.Forward));
        Assert.Contains("Einsum term 'bii' reads a diagonal of axes 1 and 2 of its operand 0 [2, 3, 4], whose sizes differ", e.Message);
    }
}
