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

    [Theory]
    [InlineData("ii,ij->j", "term 'ii' repeats a label (diagonals and traces are not supported)")]
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
}
